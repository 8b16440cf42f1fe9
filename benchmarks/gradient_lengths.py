"""G-Vendi gradient features: seconds a sample against the token cut (``--grad-max-tokens``).

Run: ``.venv/bin/python benchmarks/gradient_lengths.py`` (about 5 minutes on 2 idle CPU cores;
``--help`` for options). Offline: the proxy is the embedded SmolLM2-135M GGUF unless ``--model``.

Samples are long chain-of-thought-style pairs (a prompt of ~85 tokens, a response of ~1,100 tokens
made of several worked steps from :func:`benchmarks.gradients.bench_pairs`), so every cut really
cuts. For each cut it prints the seconds a sample (batch ``--batch``), the tokens each sample keeps,
and how much of the response the loss sees. The cuts are timed in interleaved rounds and the best
round counts, so that a busy machine (the load average is printed) disturbs the ratios less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gradients import bench_pairs  # noqa: E402


def long_pairs(n: int, seed: int = 0, parts: int = 12) -> list[tuple[str, str]]:
    """``n`` pairs whose response chains ``parts`` worked answers: a long, step-by-step response."""
    base = bench_pairs(n * parts, seed=seed)
    out = []
    for i in range(n):
        chunk = base[i * parts : (i + 1) * parts]
        steps = "\n\n".join(f"Step {k + 1}. {r}" for k, (_, r) in enumerate(chunk))
        out.append((chunk[0][0], f"Let me think step by step.\n\n{steps}\n\nSo the answer follows from the steps."))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="proxy model (default: the embedded SmolLM2-135M GGUF)")
    parser.add_argument("--cuts", default="128,256,512,1024", help="token cuts to time, comma-separated")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3, help="rounds over the cuts; the best round counts")
    args = parser.parse_args(argv)

    import torch

    from treesynth_core.coverage.features.gradients import GradientFeaturizer
    from treesynth_core.coverage.features.tokens import encode

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    pairs = long_pairs(args.samples)
    cuts = [int(c) for c in args.cuts.split(",")]
    featurizer = GradientFeaturizer(args.model, max_tokens=cuts[0])
    full = [encode(featurizer.tokenizer, p, r, 1 << 20) for p, r in pairs]
    total, resp = [len(ids) for ids, _ in full], [sum(t) for _, t in full]
    print(
        f"{featurizer.label}: {len(pairs)} samples of {min(total)}-{max(total)} tokens "
        f"({min(resp)}-{max(resp)} response tokens); batch {args.batch}, {args.reps} rounds over the cuts"
    )
    wall: dict[int, list[float]] = {cut: [] for cut in cuts}
    cpu: dict[int, list[float]] = {cut: [] for cut in cuts}
    for cut in cuts:  # warm-up at each length
        featurizer.max_tokens = cut
        featurizer.features_for_texts(pairs[: args.batch], batch_size=args.batch)
    for _ in range(args.reps):  # the cuts interleaved, so that each sees the same load
        for cut in cuts:
            featurizer.max_tokens = cut
            start, began_cpu = time.perf_counter(), time.process_time()
            featurizer.features_for_texts(pairs, batch_size=args.batch)
            wall[cut].append((time.perf_counter() - start) / len(pairs))
            cpu[cut].append((time.process_time() - began_cpu) / len(pairs))
    for cut in cuts:
        kept = [sum(encode(featurizer.tokenizer, p, r, cut)[1]) for p, r in pairs]
        share = sum(k / r for k, r in zip(kept, resp, strict=True)) / len(pairs)
        print(
            f"cut {cut:5d}: {min(wall[cut]):6.2f} s/sample (best of {args.reps}; median "
            f"{statistics.median(wall[cut]):.2f}), {min(cpu[cut]):.2f} s CPU; the loss sees "
            f"{sum(kept) / len(kept):.0f} response tokens ({share:.0%} of the response)"
        )
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
