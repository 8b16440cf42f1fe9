"""Every prompt TreeSynth sends, in one place, with the JSON schema its reply must follow.

Two **prompt profiles** say how much a prompt may ask of the model:

- ``paper`` (the default) follows the reference implementation's skeletons (arXiv 2503.17195; see
  ``shared/research/treesynth.md``, appendix): a role, numbered requirements built from the task and
  style text, and an explicit diversity rule. It is written for the models people run for real data
  (GPT-4o-class APIs, 7B-70B open models).
- ``small`` keeps each prompt to a few short lines, which the embedded 135M smoke model follows far
  better than a long one.

Both are task-agnostic: the task and its style are the user's free text, never hard-coded per
benchmark. The JSON reply line is the same in both profiles. A backend's profile comes from its
settings (:meth:`~treesynth_core.llm.settings.BackendSettings.prompt_profile`: ``small`` only for the
embedded default model), and a project can override it (``treesynth settings DIR --prompts
paper|small``); :func:`profile_for` reads it off a backend object.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

Profile = Literal["paper", "small"]
#: The profiles, in the order the app lists them.
PROFILES: tuple[Profile, ...] = get_args(Profile)


def profile_for(llm: object) -> Profile:
    """The profile of a backend object (its ``prompt_profile`` attribute; ``paper`` when it has none,
    as test doubles of capable models do)."""
    profile = getattr(llm, "prompt_profile", "paper")
    return profile if profile in PROFILES else "paper"


#: Every prompt is one user message, as in the paper's code (small models also do better without a
#: system prompt).

#: Labels (criteria and values) are short; long strings are cut by the schema.
LABEL_MAX = 80


def path_json(path: Sequence[tuple[str, str]]) -> str:
    """A root-to-node path as the JSON list the paper puts in prompts."""
    return json.dumps([{"criterion": c, "value": v} for c, v in path], ensure_ascii=False)


def _task_block(task: str, style: str) -> str:
    block = f"Task: {task}"
    if style:
        block += f"\nStyle of the data: {style}"
    return block


def _path_block(path: Sequence[tuple[str, str]], lead: str) -> str:
    if not path:
        return ""
    return f"\n{lead}\n{path_json(path)}\n"


# -- pivots and leaf samples ----------------------------------------------------------------------


#: A data-sized budget gives each sample this many times the long end of the examples' lengths,
SAMPLE_LENGTH_MULTIPLE = 2
#: and never fewer than this many tokens a sample,
SAMPLE_TOKENS_FLOOR = 48
#: plus JSON overhead: per sample (quotes, comma) and per reply (braces, the key).
JSON_TOKENS_PER_SAMPLE, JSON_TOKENS_PER_REPLY = 4, 16


def approx_tokens(text: str) -> int:
    """About how many tokens ``text`` takes as a JSON string: 4 characters a token for ASCII (escapes
    included), one a token for anything else (CJK, accents, symbols tokenize far denser)."""
    encoded = json.dumps(text, ensure_ascii=False)
    wide = len(encoded) - len(encoded.encode("ascii", "ignore"))  # the characters above 127, counted in C
    return math.ceil((len(encoded) - wide) / 4) + wide


def long_end(examples: Sequence[str]) -> int:
    """The long end of the examples' lengths in tokens: the 90th percentile (nearest rank)."""
    lengths = sorted(approx_tokens(e) for e in examples)
    return lengths[math.ceil(0.9 * len(lengths)) - 1]


def samples_budget(n: int, examples: Sequence[str] = ()) -> int:
    """max_tokens for a reply of ``n`` samples.

    Sized from ``examples`` (samples the model wrote for this subspace, e.g. a leaf's pivots) when
    there are any: ``n`` times :data:`SAMPLE_LENGTH_MULTIPLE` x their :func:`long_end` (at least
    :data:`SAMPLE_TOKENS_FLOOR`), plus JSON overhead. Without examples, 110 tokens a sample (the
    paper gives 1024 to 10 samples). Callers bound it by their cap.
    """
    if not examples:
        return max(256, 110 * n)
    per_sample = max(SAMPLE_TOKENS_FLOOR, SAMPLE_LENGTH_MULTIPLE * long_end(examples))
    return JSON_TOKENS_PER_REPLY + n * (per_sample + JSON_TOKENS_PER_SAMPLE)


def labels_budget(n: int) -> int:
    """max_tokens for a reply of ``n`` short labels."""
    return 64 + 24 * n


def reply_schema(**properties: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a reply object whose ``properties`` are all required."""
    return {"type": "object", "properties": properties, "required": list(properties)}


def text_list(*, max_items: int, min_items: int | None = None, max_length: int | None = None) -> dict[str, Any]:
    """The schema of a list of at most ``max_items`` non-empty strings (of at most ``max_length``)."""
    item: dict[str, Any] = {"type": "string", "minLength": 1}
    if max_length is not None:
        item["maxLength"] = max_length
    items: dict[str, Any] = {"type": "array", "items": item, "maxItems": max_items}
    return items if min_items is None else {**items, "minItems": min_items}


def samples_schema(n: int) -> dict[str, Any]:
    return reply_schema(samples=text_list(min_items=n, max_items=n))


#: What a samples prompt shows of what the leaf already holds: each sample cut to this many
#: characters, the most recent ones first, until this many characters in all (the ``small``
#: profile: one short line of at most :data:`SMALL_HELD` samples).
HELD_CHARS, HELD_TOTAL_CHARS = 300, 3000
SMALL_HELD, SMALL_HELD_CHARS = 3, 80


def held_lines(held: Sequence[str], *, chars: int = HELD_CHARS, total_chars: int = HELD_TOTAL_CHARS) -> list[str]:
    """The samples a leaf already holds as the prompt lists them (oldest first): the most recent ones
    that fit ``total_chars``, each cut to ``chars``, whitespace collapsed."""
    lines: list[str] = []
    total = 0
    for text in reversed(held):
        text = " ".join(text.split())
        text = text if len(text) <= chars else text[: chars - 3].rstrip() + "..."
        if lines and total + len(text) > total_chars:
            break
        lines.append(text)
        total += len(text)
    return lines[::-1]


def _each_block(each: Sequence[Sequence[tuple[str, str]]]) -> str:
    return "\n".join(f"{i}. {path_json(attrs)}" for i, attrs in enumerate(each, 1))


def samples_prompt(
    task: str,
    style: str,
    path: Sequence[tuple[str, str]],
    n: int,
    *,
    profile: Profile = "paper",
    held: Sequence[str] = (),
    each: Sequence[Sequence[tuple[str, str]]] = (),
) -> str:
    """Ask for ``n`` samples of the task inside the subspace given by ``path`` (pivots, leaf
    synthesis and the flat baseline, which has no path).

    ``each`` gives every sample its own further attributes (sample ``i`` gets ``each[i]``: the values
    drawn for the sampled nodes of a leaf's path). ``held`` lists samples the subspace already holds
    (see :func:`held_lines`), which the new ones must not repeat.
    """
    if profile == "small":
        shown = held_lines(held[-SMALL_HELD:], chars=SMALL_HELD_CHARS)
        lines = [f"Write {n} different examples of this task: {task}"]
        if style:
            lines.append(f"Style: {style}")
        if path:
            lines.append(f"Every example must have ALL of these attributes: {path_json(path)}")
        if each:
            lines.append(f"Example number i also has the attributes on line i:\n{_each_block(each)}")
        lines.append("Each example is complete and realistic; make them differ in content and wording.")
        if shown:
            lines.append("Already written, do not repeat: " + " | ".join(shown))
        lines.append(f'Reply in JSON: {{"samples": [...]}} with exactly {n} strings.')
        return "\n".join(lines)
    shown = held_lines(held)
    rules = [f"Each sample is one complete, realistic example of the task: {task}"]
    if style:
        rules.append(f"Follow this style in form, length and level: {style}")
    if path:
        rules.append(f"Every sample must have ALL of these attributes, each of them clearly: {path_json(path)}")
    if each:
        rules.append(
            'Each sample also has its own attributes, listed under "Attributes of each sample": sample i '
            "has those of line i, clearly, and the samples come in that order."
        )
    rules += [
        f"The {n} samples must be diverse from all potential perspectives: situation, content, structure, "
        "length and wording; no two may be variations of one another.",
        "Each sample stands alone: no numbering, no references to the other samples, no placeholders "
        'such as "[name]" or "...".',
        "Write only the samples themselves, not answers or commentary (unless the style asks for them).",
    ]
    if shown:
        rules.append(
            'This subspace already holds the samples listed under "Already written": every new sample '
            "must differ from all of them in situation and content, not only in wording."
        )
    blocks = ""
    if each:
        blocks += f"\n\nAttributes of each sample:\n{_each_block(each)}"
    if shown:
        blocks += "\n\nAlready written:\n" + "\n".join(f"- {text}" for text in shown)
    return (
        "You are an expert creator of training data for language models.\n"
        f"Write {n} new samples of the task below.\n\n"
        "Requirements:\n"
        + _numbered(rules)
        + blocks
        + f'\n\nReply in JSON: {{"samples": [...]}} with exactly {n} strings.'
    )


def _numbered(rules: Sequence[str]) -> str:
    return "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules, 1))


# -- criterion determination ----------------------------------------------------------------------


def criterion_schema(n: int) -> dict[str, Any]:
    label = {"type": "string", "minLength": 1, "maxLength": LABEL_MAX}
    return reply_schema(criterion=label, values=text_list(min_items=n, max_items=n, max_length=LABEL_MAX))


def criterion_prompt(
    task: str,
    style: str,
    path: Sequence[tuple[str, str]],
    pivots: Sequence[str],
    excluded: Sequence[str],
    *,
    profile: Profile = "paper",
) -> str:
    """Ask for the ONE criterion that best separates the pivots, and each pivot's value of it."""
    numbered = "\n".join(f"{i}. {p}" for i, p in enumerate(pivots, 1))
    excluded_text = ", ".join(f'"{c}"' for c in excluded) if excluded else "none"
    reply = (
        f'Reply with JSON only: {{"criterion": "<criterion>", "values": ["<value of sample 1>", ..., '
        f'"<value of sample {len(pivots)}>"]}} with exactly {len(pivots)} values, in sample order.'
    )
    if profile == "small":
        return (
            f"{_task_block(task, style)}\n"
            + _path_block(path, "These samples all come from the subspace with these attributes:")
            + f"\nSamples:\n{numbered}\n\n"
            "Name the SINGLE most significant criterion (a dimension such as topic, difficulty, "
            "format, operation, domain) along which these samples differ, and give each sample's "
            "value of that criterion.\n"
            "Rules:\n"
            f"- Do not use any of these criteria, they are already used: {excluded_text}.\n"
            "- The values must be mutually exclusive: every sample has exactly one value.\n"
            '- No vague values such as "other", "misc" or "various".\n'
            '- No combined values such as "a/b", "a and b" or "a_and_b".\n'
            "- Criterion and values are short: one to five words.\n" + reply
        )
    return (
        "You are an expert analyst of data spaces. The samples below are drawn from the data space of "
        "one task; your job is to find the dimension that best partitions this space.\n\n"
        f"{_task_block(task, style)}\n"
        + _path_block(path, "These samples all come from the subspace with these attributes:")
        + f"\nSamples:\n{numbered}\n\n"
        "Identify the SINGLE most significant dimension along which these samples differ, and give "
        "each sample's value of it.\n"
        "Requirements:\n"
        + _numbered(
            [
                f"Do not use any of these criteria, they are already used: {excluded_text}.",
                "Choose exactly ONE dimension, not a combination of several.",
                "The values are mutually exclusive: every sample has exactly one value of the dimension.",
                'No vague values such as "other", "misc" or "various".',
                'No value may merge two values of this same dimension (such as "x and y" or "x/y" '
                'where x and y would each be a value). A single concept whose name contains "and", '
                '"/" or "&" (such as "Supply and demand" or "File I/O") is fine.',
                "Name the dimension and its values concisely, as a person would label them.",
            ]
        )
        + "\n"
        + reply
    )


# -- subspace coverage ----------------------------------------------------------------------------


def coverage_schema(batch: int) -> dict[str, Any]:
    return reply_schema(new_values=text_list(max_items=batch, max_length=LABEL_MAX), complete={"type": "boolean"})


def coverage_prompt(
    task: str,
    style: str,
    path: Sequence[tuple[str, str]],
    criterion: str,
    values: Sequence[str],
    batch: int,
    *,
    profile: Profile = "paper",
) -> str:
    """Ask for the values of ``criterion`` still missing, so that the values cover the subspace."""
    listed = "\n".join(f"- {v}" for v in values) or "(none yet)"
    complete = '- If the values above already cover the criterion, reply {"new_values": [], "complete": true}.\n'
    more = f"- If more than {batch} values are missing, list {batch} of them and set complete to false.\n"
    reply = 'Reply with JSON only: {"new_values": ["..."], "complete": true or false}.'
    if profile == "small":
        return (
            f"{_task_block(task, style)}\n"
            + _path_block(path, "We look at the part of the task with these attributes:")
            + f'\nWe split it by the criterion "{criterion}". Values so far:\n{listed}\n\n'
            "List the values of this criterion that are still MISSING, so that together with the "
            "values above they cover every possible sample of this part of the task.\n"
            "Rules:\n"
            "- Each new value is mutually exclusive with every other value (no overlaps).\n"
            '- No vague values such as "other", "misc" or "various"; no combined values such as "a/b".\n'
            "- Stay within the scope of the task; values are short (one to five words).\n" + complete + more + reply
        )
    return (
        "You are an expert analyst of data spaces. A part of one task's data space is being split by "
        "one criterion; your job is to make the list of its values complete.\n\n"
        f"{_task_block(task, style)}\n"
        + _path_block(path, "We look at the part of the task with these attributes:")
        + f'\nWe split it by the criterion "{criterion}". Values so far:\n{listed}\n\n'
        "Add the values of this criterion that are still MISSING, so that together with the values "
        "above they cover every possible sample of this part of the task completely.\n"
        "Rules:\n"
        "- Each new value is mutually exclusive with every other value (no overlaps, no synonyms of a "
        "listed value).\n"
        '- No vague values such as "other", "misc" or "various"; no value that merges two values of '
        "this criterion.\n"
        "- Stay within the scope of the task and of the attributes above; label values concisely.\n"
        + complete
        + more
        + reply
    )


# -- routing existing samples (TreeSynth-balance) ---------------------------------------------------

#: The reply that says no value of the criterion fits the sample (counted, never dropped silently).
NONE_FITS = "none of these"


def route_schema(values: Sequence[str]) -> dict[str, Any]:
    return reply_schema(value={"type": "string", "enum": [*values, NONE_FITS]})


def route_prompt(
    task: str,
    style: str,
    path: Sequence[tuple[str, str]],
    criterion: str,
    values: Sequence[str],
    sample: str,
    *,
    notes: Mapping[str, str] | None = None,
) -> str:
    """Ask which ONE value of ``criterion`` a sample has (the paper's classification, one level);
    ``notes`` are a person's descriptions of values, shown beside them."""
    notes = notes or {}
    listed = "\n".join(f"- {v}" + (f" ({notes[v]})" if notes.get(v) else "") for v in values)
    return (
        f"{_task_block(task, style)}\n"
        + _path_block(path, "The sample below belongs to the part of the task with these attributes:")
        + f"\nSample:\n{sample}\n\n"
        f'Which value of the criterion "{criterion}" does this sample have? Values:\n{listed}\n'
        f'Choose exactly one value from the list. If none of them fits, choose "{NONE_FITS}".\n'
        'Reply with JSON only: {"value": "<one value from the list>"}.'
    )


# -- filling gaps (Prismatic Synthesis) ------------------------------------------------------------

#: Examples shown to the gap-filling prompt are cut to this many characters.
EXAMPLE_CHARS = 600


def gap_prompt(
    task: str,
    style: str,
    path: Sequence[tuple[str, str]],
    examples: Sequence[str],
    n: int,
    *,
    profile: Profile = "paper",
) -> str:
    """Ask for ``n`` new samples like ``examples`` (same task and attributes) but different from them."""
    lines = [] if profile == "small" else ["You are an expert creator of training data for language models."]
    lines.append(f"Task: {task}")
    if style:
        lines.append(f"Style: {style}")
    if path:
        lines.append(f"The examples below all have these attributes: {path_json(path)}")
    lines.append("Examples:")
    for i, example in enumerate(examples, 1):
        text = example if len(example) <= EXAMPLE_CHARS else example[: EXAMPLE_CHARS - 3].rstrip() + "..."
        lines.append(f"{i}. {text}")
    same = "the same task and attributes" if path else "the same task"
    lines.append(
        f"Write {n} NEW examples of {same}, in the same kind of format and length, but different from "
        "every example above: other situations, content and structure that these examples do not cover."
    )
    if profile != "small":
        lines.append("Each new example must also differ from the others you write, and stand alone.")
    lines.append(f'Reply in JSON: {{"samples": [...]}} with exactly {n} strings.')
    return "\n".join(lines)


# -- responses ------------------------------------------------------------------------------------


def response_prompt(task: str, style: str, instruction: str, *, profile: Profile = "paper") -> str:
    """Ask for the response to one synthesized instruction."""
    context = f"(This is training data for the task: {task}"
    context += f"; style: {style})" if style else ")"
    if profile == "small":
        return f"{instruction}\n\n{context}\nAnswer the request above as well as you can."
    return (
        f"{instruction}\n\n{context}\n"
        "Write the ideal response to the request above: correct, complete and in the form the request "
        "implies. Where it needs reasoning (a problem to solve, code to write), reason step by step and "
        "end with the final answer."
    )


def repair_message(error: str) -> str:
    """The follow-up turn sent when a reply did not parse or broke a rule."""
    return f"Your reply was not valid: {error}\nReply again with valid JSON only, following every rule."


# -- SynthLLM's document-grounded questions (concepts) -------------------------------------------


def concepts_schema() -> dict[str, Any]:
    topic = reply_schema(topic={"type": "string", "minLength": 1}, concepts=text_list(min_items=1, max_items=20))
    return reply_schema(
        level={"type": "string"},
        subject={"type": "string"},
        topics={"type": "array", "items": topic, "minItems": 1, "maxItems": 5},
    )


def concepts_prompt(document: str, *, profile: Profile = "paper") -> str:
    """Extract a document's knowledge (the paper's Fig. 10): its educational level or audience, its
    subject, 1-5 topics and 5-20 key concepts per topic."""
    reply = '{"level": "...", "subject": "...", "topics": [{"topic": "...", "concepts": ["...", "..."]}]}'
    if profile == "small":
        return (
            f"Text:\n{document}\n\nFor the text above, give its level, its subject, 1 to 3 topics and 3 to 5 "
            f"key concepts for each topic. Reply with JSON only: {reply}"
        )
    return (
        "As an expert in education, analyze the following document and identify the knowledge it teaches.\n\n"
        f"Document:\n{document}\n\n"
        "Identify:\n"
        "1. level: the educational level or audience the document is written for (e.g. high school, "
        "undergraduate, professional developer).\n"
        "2. subject: the subject it belongs to.\n"
        "3. topics: 1 to 5 topics the document covers.\n"
        "4. concepts: for each topic, 5 to 20 key concepts (knowledge points a student must understand to "
        "master the topic), each a short noun phrase that appears in or is taught by the document.\n\n"
        f"Reply with JSON only: {reply}"
    )


def concepts_budget(profile: Profile = "paper") -> int:
    """max_tokens of an extraction reply: 5 topics of 20 short concepts (``small``: 3 of 5)."""
    return 320 if profile == "small" else 1200


def questions_budget(n: int, profile: Profile = "paper") -> int:
    """max_tokens of a reply of ``n`` questions: a capable model's run to 80 tokens and more (code,
    formulas); the small profile's are one short line."""
    return 40 + n * (60 if profile == "small" else 160)


def questions_schema(n: int, *, tagged: bool = False) -> dict[str, Any]:
    if not tagged:
        return reply_schema(questions=text_list(min_items=1, max_items=n))
    item = reply_schema(question={"type": "string", "minLength": 1}, origin={"enum": ["original", "new"]})
    return reply_schema(questions={"type": "array", "items": item, "minItems": 1, "maxItems": n})


def _documents_block(documents: Sequence[str]) -> str:
    if len(documents) == 1:
        return f"Document:\n{documents[0]}\n"
    return "".join(f"Document {i}:\n{text}\n\n" for i, text in enumerate(documents, 1))


def level1_prompt(document: str, n: int, *, profile: Profile = "paper") -> str:
    """Level 1 (the paper's Fig. 8): questions taken from one document and newly written from it,
    each tagged original or new."""
    reply = '{"questions": [{"question": "...", "origin": "original"}, {"question": "...", "origin": "new"}]}'
    if profile == "small":
        return (
            f"Text:\n{document}\n\nWrite {n} questions about the text above. Reply with JSON only: {reply} "
            '(origin "original" when the question is in the text, else "new").'
        )
    return (
        "You are an expert teacher writing exam questions from reference material.\n\n"
        f"{_documents_block([document])}\n"
        f"Write {n} questions based on the document above:\n"
        "1. First take the questions, exercises or problems the document itself contains, rewritten to stand "
        'alone; tag each "original".\n'
        '2. Then write new questions that test the knowledge the document teaches; tag each "new".\n'
        "3. Every question must be self-contained (answerable without seeing the document), clear, and have "
        "an exact or clearly defined answer.\n"
        "4. Do not answer the questions.\n\n"
        f"Reply with JSON only, at most {n} questions: {reply}"
    )


def level2_prompt(document: str, combos: Sequence[Sequence[str]], *, profile: Profile = "paper") -> str:
    """Level 2 (the paper's Fig. 9): one question per combination of 2-3 of the document's key
    concepts, grounded in the document."""
    lines = "\n".join(f"{i}. " + "; ".join(combo) for i, combo in enumerate(combos, 1))
    reply = '{"questions": ["...", "..."]}'
    if profile == "small":
        return (
            f"Text:\n{document}\n\nWrite one question for each line below, using the ideas on that line.\n"
            f"{lines}\nReply with JSON only: {reply}"
        )
    return (
        "You are an expert teacher writing exam questions from reference material.\n\n"
        f"{_documents_block([document])}\n"
        f"Key concepts to combine, one line per question:\n{lines}\n\n"
        f"Write {len(combos)} questions, one per line above, in that order:\n"
        "1. Each question must combine all the key concepts of its line, so that answering it needs "
        "every one of them.\n"
        "2. Ground the question in the document: use its facts, definitions and examples.\n"
        "3. Every question must be self-contained (answerable without seeing the document), clear, and have "
        "an exact or clearly defined answer. Do not answer them.\n\n"
        f"Reply with JSON only: {reply}"
    )


def level3_prompt(
    documents: Sequence[str],
    concepts_by_topic: Sequence[tuple[str, Sequence[str]]],
    n: int,
    *,
    profile: Profile = "paper",
) -> str:
    """Level 3 (the paper's Fig. 11): questions combining key concepts from different topics (a walk
    on the concept graph), grounded in the two documents closest to those concepts."""
    listed = "\n".join(f"- {topic}: " + "; ".join(concepts) for topic, concepts in concepts_by_topic)
    reply = '{"questions": ["...", "..."]}'
    if profile == "small":
        return (
            f"{_documents_block(documents)}Ideas:\n{listed}\n\nWrite {n} questions, each using two or three of "
            f"these ideas. Reply with JSON only: {reply}"
        )
    return (
        "You are an expert teacher writing challenging exam questions that connect several areas of knowledge.\n\n"
        f"{_documents_block(documents)}"
        f"Key concepts, grouped by the topic they come from:\n{listed}\n\n"
        f"Write {n} questions:\n"
        "1. Each question must combine 2 to 3 of the key concepts above, taken from different topics where "
        "the list has more than one.\n"
        "2. Use the documents above as reference for facts, definitions and context.\n"
        "3. Every question must be self-contained (answerable without seeing the documents), clear, and have "
        "an exact or clearly defined answer. Do not answer them.\n\n"
        f"Reply with JSON only, at most {n} questions: {reply}"
    )
