"""What resetting llama.cpp's state before every call costs the embedded backend, and what it buys.

The embedded backend calls ``Llama.reset()`` before each completion so that the same request with the
same seed gives the same text whatever ran before it. Without the reset (llama-cpp-python's default)
a call reuses the KV cache of the previous prompt's shared prefix and evaluates only the rest, which
is faster but changes the logits in their last bits, and on some CPUs a sampled token.

This runs a growth-like sequence of requests (the same task, different paths, so consecutive prompts
share a long prefix, each request twice in a row) both ways on the default SmolLM2-135M GGUF:

* ``reset``: :class:`EmbeddedLLM` as shipped (state reset before every call);
* ``reuse``: the same requests straight into ``create_chat_completion`` without a reset (the old
  behaviour);

and prints the median time per call for short replies (``max_tokens`` 8, where prompt evaluation is
a large part of the time) and longer ones (64), plus how many replies differ from the first
``reset`` pass. The two modes alternate pass by pass, so a busy machine slows both alike; still,
run it on an idle machine (llama.cpp's threads slow down badly when the cores are shared).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedded_reset.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.llm.base import ChatRequest, ChatResult  # noqa: E402
from treesynth_core.llm.embedded import EmbeddedLLM  # noqa: E402
from treesynth_core.llm.settings import BackendSettings  # noqa: E402
from treesynth_core.prompts import templates as P  # noqa: E402

TASK = "Short math word problems for grade-school students"
STYLE = "one problem per sample, two or three sentences, with whole numbers"
PATHS = [
    [("Operation", "addition")],
    [("Operation", "addition"), ("Setting", "market")],
    [("Operation", "division")],
    [("Operation", "division"), ("Setting", "farm")],
]


#: Reply lengths measured: short (prompt evaluation weighs most) and longer.
MAX_TOKENS = {"short": 8, "longer": 64}


def requests(max_tokens: int) -> list[ChatRequest]:
    """Each path's pivots request, twice in a row (the second is an exact repeat of the first)."""
    out = []
    for i, path in enumerate(PATHS):
        prompt = P.samples_prompt(TASK, STYLE, path, 3, profile="small")
        request = ChatRequest.chat(
            None, prompt, seed=i, temperature=0.7, max_tokens=max_tokens, schema=P.samples_schema(3)
        )
        out += [request, request]
    return out


def with_reset(llm: EmbeddedLLM) -> Callable[[ChatRequest], ChatResult]:
    return lambda request: asyncio.run(llm.complete(request))


def without_reset(llm: EmbeddedLLM) -> Callable[[ChatRequest], ChatResult]:
    loaded = llm.load()

    def call(request: ChatRequest) -> ChatResult:
        kwargs = llm._generation_kwargs(request)
        with loaded.lock:
            started = time.perf_counter()
            response = loaded.llama.create_chat_completion(**kwargs)
            latency_s = time.perf_counter() - started
        return llm._result(response, latency_s)  # type: ignore[arg-type]

    return call


def timed(call: Callable[[ChatRequest], ChatResult], batch: Sequence[ChatRequest]) -> tuple[list[float], list[str]]:
    seconds, texts = [], []
    for request in batch:
        result = call(request)
        seconds.append(result.latency_s)
        texts.append(result.text)
    return seconds, texts


def prompt_eval(llm: EmbeddedLLM, rounds: int) -> dict[str, float | int]:
    """Median ms to evaluate each pivots prompt whole (after a reset) and only past the prefix it
    shares with the previous one (what llama-cpp-python does without a reset): the reset's own cost."""
    llama = llm.load().llama
    turns = [request.messages[-1][1] for request in requests(8)[::2]]
    tokens = [
        llama.tokenize(f"<|im_start|>user\n{turn}<|im_end|>\n<|im_start|>assistant\n".encode(), special=True)
        for turn in turns
    ]
    whole, suffix = [], []
    for _ in range(rounds):
        for i, current in enumerate(tokens):
            llama.reset()
            started = time.perf_counter()
            llama.eval(current)
            whole.append(time.perf_counter() - started)
            previous = tokens[i - 1]
            llama.reset()
            llama.eval(previous)
            pairs = zip(previous, current, strict=False)
            shared = next((k for k, (a, b) in enumerate(pairs) if a != b), min(len(previous), len(current)))
            llama.n_tokens = shared  # keep the shared prefix, as llama-cpp-python's prefix match does
            started = time.perf_counter()
            llama.eval(current[shared:])
            suffix.append(time.perf_counter() - started)
    llama.reset()
    return {
        "prompt_tokens": round(statistics.mean(len(t) for t in tokens)),
        "whole_ms": round(1000 * statistics.median(whole), 1),
        "suffix_ms": round(1000 * statistics.median(suffix), 1),
    }


def measure(rounds: int) -> dict[str, dict[str, float | int]]:
    llm = EmbeddedLLM(BackendSettings())
    llm.load()
    modes = {"reset": with_reset(llm), "reuse": without_reset(llm)}
    out: dict[str, dict[str, float | int]] = {"prompt_eval": prompt_eval(llm, 2 * rounds)}
    for label, max_tokens in MAX_TOKENS.items():
        batch = requests(max_tokens)
        timed(modes["reset"], batch[:1])  # warm-up
        reference: list[str] | None = None
        seconds: dict[str, list[float]] = {mode: [] for mode in modes}
        differ: dict[str, int] = dict.fromkeys(modes, 0)
        for round_no in range(rounds):
            for mode, call in modes.items():  # alternate, so drift in the machine's speed hits both
                print(f"{label} replies, pass {round_no + 1}/{rounds}, {mode}", file=sys.stderr, flush=True)
                taken, texts = timed(call, batch)
                seconds[mode] += taken
                if reference is None:
                    reference = texts
                differ[mode] += sum(a != b for a, b in zip(texts, reference, strict=True))
        for mode in modes:
            out[f"{label}/{mode}"] = {
                "calls": len(seconds[mode]),
                "ms_per_call": round(1000 * statistics.mean(seconds[mode]), 1),
                "median_ms": round(1000 * statistics.median(seconds[mode]), 1),
                "replies_differing_from_first_reset_pass": differ[mode],
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the requests per mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = measure(args.rounds)
    if args.json:
        print(json.dumps(results))
        return 0
    evaluation = results.pop("prompt_eval")
    print(
        f"prompt evaluation ({evaluation['prompt_tokens']} tokens, median): whole {evaluation['whole_ms']} ms, "
        f"past the shared prefix {evaluation['suffix_ms']} ms"
    )
    print(f"{'replies/mode':<14}{'calls':>6}{'ms/call':>10}{'median':>10}{'differ':>8}")
    for name, row in results.items():
        print(
            f"{name:<14}{row['calls']:>6}{row['ms_per_call']:>10}{row['median_ms']:>10}"
            f"{row['replies_differing_from_first_reset_pass']:>8}"
        )
    for label in MAX_TOKENS:
        cost = float(results[f"{label}/reset"]["median_ms"]) - float(results[f"{label}/reuse"]["median_ms"])
        print(f"{label} replies: the reset costs {cost:+.1f} ms a call (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
