"""A stand-in for a capable model answering the sample requests of the ``python_coding`` example tree.

:func:`coding_reply` takes a chat completion body as ``batch prepare`` writes it and returns the chat
completion a GPT-4o-class model would send: valid JSON ``{"samples": [...]}`` with as many
instructions as the schema asks for, each written for the leaf's attributes (task type, input type,
bug kind, ... read from the prompt's attribute list), with its own function names, domain, data and
code, so samples of one leaf differ as a capable model's do. Replies are drawn from the request's
seed and messages, so the same request gets the same reply. Like a real model it sometimes repeats
itself: about one reply in :data:`REPEAT_EVERY` repeats its first sample, so the leaf's next round asks
for the missing one. Used by ``benchmarks/batch_walk.py`` as the model behind its batch engines.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any

#: About one reply in this many repeats its first sample (what a leaf's next round tops up).
REPEAT_EVERY = 2000

_ATTRIBUTES = re.compile(r"ALL of these attributes, each of them clearly: (\[.*?\])\n")

DOMAINS = (
    "a bakery's order log",
    "a weather station",
    "a library checkout system",
    "a fitness tracker",
    "an online bookshop",
    "a school timetable",
    "a parking garage",
    "a bike rental service",
    "a hospital ward roster",
    "a music playlist app",
    "a warehouse inventory",
    "a train timetable",
    "a chess club's results",
    "a recipe website",
    "a support ticket queue",
    "a solar panel monitor",
    "a city bus network",
    "a movie theatre's bookings",
    "a payroll spreadsheet",
    "a garden planner",
    "a flight tracker",
    "a coffee shop's loyalty cards",
    "a marathon's finish times",
    "a museum's visitor counts",
    "a vending machine",
    "a dental clinic's appointments",
    "an e-mail newsletter",
    "a hotel's room bookings",
    "a farm's harvest records",
    "a game server's leaderboard",
    "a car-sharing fleet",
    "a podcast catalogue",
    "a translation agency",
    "a pharmacy's stock",
    "a river level sensor",
    "a student grade book",
    "an airport's gate schedule",
    "a pet shelter's adoptions",
    "a bank's transaction feed",
    "a cinema's snack sales",
)
VERBS = (
    "count",
    "merge",
    "group",
    "filter",
    "normalize",
    "rank",
    "split",
    "parse",
    "validate",
    "summarize",
    "dedupe",
    "rotate",
    "flatten",
    "compress",
    "score",
    "match",
    "pair",
    "bucket",
    "clamp",
    "reverse",
    "encode",
    "scale",
    "trim",
    "chunk",
)
NOUNS = (
    "readings",
    "orders",
    "intervals",
    "tags",
    "scores",
    "names",
    "prices",
    "visits",
    "tickets",
    "routes",
    "codes",
    "labels",
    "entries",
    "events",
    "slots",
    "records",
    "words",
    "totals",
    "shifts",
    "sizes",
)
GOALS = (
    "the {n} most frequent items",
    "a sorted copy without duplicates",
    "the running total at each step",
    "the items grouped by their first letter",
    "the longest run of increasing values",
    "a dictionary from each item to its count",
    "the pairs whose difference is exactly {n}",
    "the index of the first value above {n}",
    "the values rounded to {n} decimal places",
    "every {n}th item, starting from the last",
    "the median of the values",
    "True when no value repeats within {n} positions",
)
LEVELS = {
    "beginner": "Keep it simple: a loop and an if are enough.",
    "intermediate": "Handle empty input and invalid values with a clear ValueError.",
    "advanced": "It must run in O(n log n) time or better and use constant extra memory where it can.",
}
INPUT_KINDS = {
    "string": "a string",
    "number": "an integer",
    "list": "a list of integers",
    "dictionary": "a dictionary mapping names to integers",
    "set": "two sets of strings",
    "nested data": "a list of dictionaries, each holding a list",
    "date": "a list of ISO dates (YYYY-MM-DD)",
}
LANG_SYNTAX = {
    "JavaScript": "const {acc} = {arg}.filter(x => x % {k} === 0).map(x => x * {m});",
    "Java": "int {acc} = 0;\nfor (int i = 0; i < {arg}.length; i++) {{ if ({arg}[i] > {k}) {acc} += {arg}[i] * {m}; }}",
    "C": "int {acc} = 0;\nfor (size_t i = 0; i < n; i++) {{ if ({arg}[i] % {k} == 0) {acc} += {arg}[i]; }}",
    "Ruby": "{acc} = {arg}.select {{ |x| x > {k} }}.map {{ |x| x * {m} }}.sum",
    "pseudocode": "SET {acc} TO 0\nFOR EACH x IN {arg}\n  IF x MOD {k} = 0 THEN ADD x * {m} TO {acc}\nRETURN {acc}",
}


def _attributes(body: Mapping[str, Any]) -> dict[str, str]:
    """The leaf's attributes as the prompt lists them: criterion -> value."""
    text = "".join(str(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, Mapping))
    found = _ATTRIBUTES.search(text)
    return {a["criterion"]: a["value"] for a in json.loads(found.group(1))} if found else {}


def _literal(rng: random.Random, kind: str) -> str:
    words = rng.sample(NOUNS, 4)
    numbers = [rng.randint(-50, 999) for _ in range(rng.randint(4, 7))]
    if kind == "string":
        return json.dumps(" ".join(rng.sample(VERBS, 3) + words[:2]))
    if kind == "number":
        return ", ".join(str(rng.randint(10, 10**7)) for _ in range(3))
    if kind == "dictionary":
        return json.dumps(dict(zip(words, numbers, strict=False)))
    if kind == "set":
        return f"{set(words[:3])!r}, {set(words[1:])!r}"
    if kind == "nested data":
        return json.dumps([{"id": n, words[0]: numbers[i : i + 2]} for i, n in enumerate(numbers[:3])])
    if kind == "date":
        return json.dumps(
            [f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(3)]
        )
    return str(numbers)


def _code(rng: random.Random, name: str, arg: str) -> tuple[str, int, int, str]:
    """A short function, with the numbers and accumulator name it uses."""
    acc, k, m = rng.choice(("total", "result", "acc", "out", "best")), rng.randint(2, 9), rng.randint(2, 12)
    code = (
        f"def {name}({arg}):\n    {acc} = 0\n    for x in {arg}:\n        if x % {k} == 0:\n"
        f"            {acc} += x * {m}\n    return {acc}"
    )
    return code, k, m, acc


def _sample(rng: random.Random, attrs: Mapping[str, str]) -> str:
    task = attrs.get("Task type", "write a function")
    domain, verb, noun = rng.choice(DOMAINS), rng.choice(VERBS), rng.choice(NOUNS)
    name, arg = f"{verb}_{noun}", rng.choice(NOUNS)
    goal = rng.choice(GOALS).format(n=rng.randint(2, 9))
    code, k, m, acc = _code(rng, name, arg)
    if task == "write a function":
        kind = attrs.get("Main input type", "list")
        level = LEVELS.get(attrs.get("Difficulty", ""), "")
        return (
            f"Write a Python function `{name}({arg})` that takes {INPUT_KINDS.get(kind, 'a list')} from {domain} "
            f"and returns {goal}. {level}\nInput: {_literal(rng, kind)}"
        )
    if task == "write a class":
        concept = attrs.get("Main OOP concept", "encapsulation")
        title = "".join(w.capitalize() for w in (noun, verb)) + "er"
        return (
            f"Write a Python class `{title}` for {domain} that keeps its {arg} and can report {goal}; "
            f"show {concept} clearly, and add a short usage example with {_literal(rng, 'list')}."
        )
    if task == "fix a bug":
        bug = attrs.get("Bug kind", "wrong condition")
        return (
            f"This function from {domain} should return {goal}, but it has a {bug} and fails for "
            f"{_literal(rng, 'list')}. Find and fix it:\n\n{code.replace('% ', '// ')}"
        )
    if task == "explain code":
        how = attrs.get("Explanation kind", "summarize its purpose")
        return f"Explain this function from {domain} ({how}) for {arg} = {_literal(rng, 'list')}:\n\n{code}"
    if task == "optimize code":
        neck = attrs.get("Bottleneck", "nested loops")
        return (
            f"`{name}` is too slow on the {rng.randint(2, 90)} million {arg} of {domain} ({neck}). "
            f"Rewrite it so it returns the same result faster, e.g. for {_literal(rng, 'list')}:\n\n{code}"
        )
    if task == "refactor code":
        aim = attrs.get("Refactoring goal", "clearer names")
        return (
            f"Refactor this code from {domain} ({aim}) without changing what it returns for "
            f"{_literal(rng, 'list')}:\n\n{code.replace(acc, 'v')}"
        )
    if task == "write tests":
        style = attrs.get("Test style", "pytest")
        return (
            f"Write {style} tests for `{name}` from {domain}: it should return {goal}; cover "
            f"{_literal(rng, 'list')}, an empty input and one invalid value.\n\n{code}"
        )
    lang = attrs.get("Source language", "JavaScript")
    source = LANG_SYNTAX.get(lang, LANG_SYNTAX["JavaScript"]).format(acc=acc, arg=arg, k=k, m=m)
    return (
        f"Rewrite this {lang} from {domain} in Python as `{name}`, keeping the same behaviour "
        f"(with {arg} = {_literal(rng, 'list')} both must agree):\n\n{source}"
    )


def coding_reply(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat completion a capable model sends for a samples request of the python_coding tree."""
    rng = random.Random(f"{body.get('seed')}|{json.dumps(body.get('messages'), sort_keys=True)}")
    fmt = body.get("response_format")
    properties = fmt["json_schema"]["schema"]["properties"] if isinstance(fmt, Mapping) else {}
    n = int(properties.get("samples", {}).get("maxItems") or 10)
    attrs = _attributes(body)
    samples = [_sample(rng, attrs) for _ in range(n)]
    if n > 1 and rng.randrange(REPEAT_EVERY) == 0:
        samples[-1] = samples[0]
    text = json.dumps({"samples": samples})
    return {
        "id": f"chatcmpl-{rng.getrandbits(48):x}",
        "object": "chat.completion",
        "model": body.get("model", "m"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": len(json.dumps(body.get("messages"))) // 4, "completion_tokens": len(text) // 4},
    }
