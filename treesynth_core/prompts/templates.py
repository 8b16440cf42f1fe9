"""Every prompt TreeSynth sends, in one place, with the JSON schema its reply must follow.

Templates follow the paper's skeletons (arXiv 2503.17195, appendix; see
``shared/research/treesynth.md``) but are task-agnostic: the task and its style are the user's
free text, never hard-coded per benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

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


def samples_budget(n: int) -> int:
    """max_tokens for a reply of ``n`` samples (the paper gives 1024 to 10 samples)."""
    return max(256, 110 * n)


def labels_budget(n: int) -> int:
    """max_tokens for a reply of ``n`` short labels."""
    return 64 + 24 * n


def samples_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "samples": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": n,
                "maxItems": n,
            }
        },
        "required": ["samples"],
    }


def samples_prompt(task: str, style: str, path: Sequence[tuple[str, str]], n: int) -> str:
    """Ask for ``n`` samples of the task inside the subspace given by ``path``.

    Kept short on purpose: small models follow a short prompt far better than a long one.
    """
    lines = [f"Write {n} different examples of this task: {task}"]
    if style:
        lines.append(f"Style: {style}")
    if path:
        lines.append(f"Every example must have ALL of these attributes: {path_json(path)}")
    lines.append("Each example is complete and realistic; make them differ in content and wording.")
    lines.append(f'Reply in JSON: {{"samples": [...]}} with exactly {n} strings.')
    return "\n".join(lines)


# -- criterion determination ----------------------------------------------------------------------


def criterion_schema(n: int) -> dict[str, Any]:
    label = {"type": "string", "minLength": 1, "maxLength": LABEL_MAX}
    return {
        "type": "object",
        "properties": {
            "criterion": label,
            "values": {"type": "array", "items": label, "minItems": n, "maxItems": n},
        },
        "required": ["criterion", "values"],
    }


def criterion_prompt(
    task: str,
    style: str,
    path: Sequence[tuple[str, str]],
    pivots: Sequence[str],
    excluded: Sequence[str],
) -> str:
    """Ask for the ONE criterion that best separates the pivots, and each pivot's value of it."""
    numbered = "\n".join(f"{i}. {p}" for i, p in enumerate(pivots, 1))
    excluded_text = ", ".join(f'"{c}"' for c in excluded) if excluded else "none"
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
        "- Criterion and values are short: one to five words.\n"
        f'Reply with JSON only: {{"criterion": "<criterion>", "values": ["<value of sample 1>", ..., '
        f'"<value of sample {len(pivots)}>"]}} with exactly {len(pivots)} values, in sample order.'
    )


# -- subspace coverage ----------------------------------------------------------------------------


def coverage_schema(batch: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "new_values": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": LABEL_MAX},
                "maxItems": batch,
            },
            "complete": {"type": "boolean"},
        },
        "required": ["new_values", "complete"],
    }


def coverage_prompt(
    task: str,
    style: str,
    path: Sequence[tuple[str, str]],
    criterion: str,
    values: Sequence[str],
    batch: int,
) -> str:
    """Ask for the values of ``criterion`` still missing, so that the values cover the subspace."""
    listed = "\n".join(f"- {v}" for v in values) or "(none yet)"
    return (
        f"{_task_block(task, style)}\n"
        + _path_block(path, "We look at the part of the task with these attributes:")
        + f'\nWe split it by the criterion "{criterion}". Values so far:\n{listed}\n\n'
        "List the values of this criterion that are still MISSING, so that together with the "
        "values above they cover every possible sample of this part of the task.\n"
        "Rules:\n"
        "- Each new value is mutually exclusive with every other value (no overlaps).\n"
        '- No vague values such as "other", "misc" or "various"; no combined values such as "a/b".\n'
        "- Stay within the scope of the task; values are short (one to five words).\n"
        f'- If the values above already cover the criterion, reply {{"new_values": [], "complete": true}}.\n'
        f"- If more than {batch} values are missing, list {batch} of them and set complete to false.\n"
        'Reply with JSON only: {"new_values": ["..."], "complete": true or false}.'
    )


# -- routing existing samples (TreeSynth-balance) ---------------------------------------------------

#: The reply that says no value of the criterion fits the sample (counted, never dropped silently).
NONE_FITS = "none of these"


def route_schema(values: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"value": {"type": "string", "enum": [*values, NONE_FITS]}},
        "required": ["value"],
    }


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


def gap_prompt(task: str, style: str, path: Sequence[tuple[str, str]], examples: Sequence[str], n: int) -> str:
    """Ask for ``n`` new samples like ``examples`` (same task and attributes) but different from them."""
    lines = [f"Task: {task}"]
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
    lines.append(f'Reply in JSON: {{"samples": [...]}} with exactly {n} strings.')
    return "\n".join(lines)


# -- responses ------------------------------------------------------------------------------------


def response_prompt(task: str, style: str, instruction: str) -> str:
    """Ask for the response to one synthesized instruction."""
    context = f"(This is training data for the task: {task}"
    context += f"; style: {style})" if style else ")"
    return f"{instruction}\n\n{context}\nAnswer the request above as well as you can."


def repair_message(error: str) -> str:
    """The follow-up turn sent when a reply did not parse or broke a rule."""
    return f"Your reply was not valid: {error}\nReply again with valid JSON only, following every rule."
