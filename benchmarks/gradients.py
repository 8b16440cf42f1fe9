"""G-Vendi gradient features: speed against the forward+backward floor and the naive method, and fidelity.

Run: ``.venv/bin/python benchmarks/gradients.py`` (about 5 minutes on 2 idle CPU cores, and 17 GB of
free disk for the exact gradients; ``--help`` for options). Everything is offline: the proxy is
SmolLM2-135M-Instruct from the embedded GGUF (or ``--random-weights``: its architecture with random
weights and a byte-level tokenizer, for a machine with torch and transformers but no model files),
the samples are made up here from templates (prompt + response, cut to exactly ``--tokens`` tokens).

It prints:

* **samples/s** of :class:`~treesynth_core.coverage.features.gradients.GradientFeaturizer` at 128 tokens
  for each ``--batch`` size and precision (``--dtype fp32|bf16|auto``, or ``both``), and the **floor**:
  a plain forward + backward of the same batches in the same precision (per-sample mean loss,
  parameter gradients on, nothing else), batch by batch, interleaved with ours so that both see the
  same load. Overhead ratio = our time / floor (target <= 1.3), by wall clock and by CPU time.
* with ``--dtype both``: how far bf16 features are from fp32 ones (Pearson of the pairwise cosines,
  and each sample's cosine between its two features), per batch size.
* **fidelity**: Pearson (and the largest error) between the cosines of our features and the exact
  cosines of the full gradients (fp32), on ``--exact-samples`` samples (all pairs; default all of
  them, none with ``--speed-only``). Exact gradients are kept as bfloat16 in a temporary
  memory-mapped file (about 270 MB a sample) and deleted afterwards.
* the **naive method** (not with ``--speed-only``): per-sample full flattened gradient (batch-1
  backward, as the Prismatic code does), then a dense seeded Rademacher projection in parameter
  chunks, buffered ``--naive-batch`` samples at a time (the matrix is regenerated chunk by chunk:
  |θ| x d never fits). The projection is timed on a slice of the chunks and scaled to all of them
  (it costs the same per chunk); the output says so. Speedup = naive time / ours, per sample.

On a GPU: ``--random-weights --dtype both --batch 8,32,64 --samples 512 --speed-only --exact-samples 32``
(``.gpubench/run.sh`` runs it).

``--profile``: no timing table; instead torch.profiler over ``--profile-batches`` batches (after a
warm-up) at each ``--batch`` and ``--dtype``: the top 20 ops by self CUDA time (on a GPU) and by
self CPU time, ops and kernels a batch, and the share of the wall time the GPU was busy (the rest it
waited for the host: launches, Python, syncs), for ours and for the floor on the same batches.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# -- made-up samples: twelve kinds of task, filled from a seeded RNG ---------------------------------

_NAMES = ["Ava", "Ben", "Chloe", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena"]
_THINGS = ["apples", "bicycles", "notebooks", "candles", "tickets", "marbles", "stamps", "lemons", "kites"]
_TOPICS = [
    "photosynthesis",
    "the French Revolution",
    "black holes",
    "inflation",
    "the immune system",
    "plate tectonics",
    "the printing press",
    "neural networks",
    "the water cycle",
    "supply chains",
]
_CITIES = ["Lisbon", "Kyoto", "Nairobi", "Montreal", "Oslo", "Lima", "Hanoi", "Krakow", "Tunis", "Perth"]
_LANGS = ["French", "Spanish", "German", "Italian", "Portuguese"]
_FILLER = (
    "Please be careful, explain each step, and keep the answer self-contained so that a reader "
    "who has not seen the question can still follow it from start to finish."
)


def _pair(kind: int, rng: random.Random) -> tuple[str, str]:
    name, other = rng.sample(_NAMES, 2)
    a, b, c = rng.randint(3, 90), rng.randint(2, 40), rng.randint(2, 9)
    thing, topic, city, lang = rng.choice(_THINGS), rng.choice(_TOPICS), rng.choice(_CITIES), rng.choice(_LANGS)
    if kind == 0:
        q = f"{name} has {a} {thing} and buys {b} more, then gives {c} to {other}. How many {thing} are left?"
        r = (
            f"{name} starts with {a} {thing}. After buying {b} more there are {a} + {b} = {a + b}. Giving "
            f"{c} to {other} leaves {a + b} - {c} = {a + b - c}. So {name} has {a + b - c} {thing} left. "
            f"Check: {a + b - c} + {c} = {a + b}, and {a + b} - {b} = {a}, which matches the start."
        )
    elif kind == 1:
        q = f"Write a Python function that returns the {c} largest numbers of a list, for {name}'s {thing} data."
        r = (
            f'def top_{c}(values):\n    """Return the {c} largest values, largest first."""\n'
            f"    if not values:\n        return []\n    ordered = sorted(values, reverse=True)\n"
            f"    return ordered[:{c}]\n\n# Example\nprint(top_{c}([{a}, {b}, {c}, {a + b}, {a * 2}]))\n"
            "The function sorts a copy in descending order and slices the first items; it runs in "
            "O(n log n) time and handles short lists because slicing never raises."
        )
    elif kind == 2:
        q = f"Translate into {lang}: '{name} will visit {city} next week to buy {thing} with {other}.'"
        r = (
            f"Here is the sentence in {lang}, followed by a word-by-word note. The subject {name} stays "
            f"the same, the verb is put in the future tense, {city} keeps its usual spelling in {lang}, "
            f"and the plural noun for {thing} agrees with the article. A natural alternative uses the "
            f"near future, which sounds more spoken. Both versions are correct in everyday {lang}."
        )
    elif kind == 3:
        q = f"Summarize in {c} sentences what {name}, a student aged {10 + c}, should know about {topic}."
        r = (
            f"{topic.capitalize()} is a central idea that explains how a large system changes over time. "
            f"For {name}, the key point is that its parts interact in predictable ways, and that people study "
            f"them with evidence such as measurements, records and models. At {10 + c}, {name} can connect "
            f"{topic} with everyday observations, for example {thing} or a trip to {city}, and with the "
            "larger patterns met in later courses."
        )
    elif kind == 4:
        q = f"Give me a simple recipe that uses {thing} as a decoration for a party of {a} people."
        r = (
            f"Ingredients: {c} cups of flour, {b} eggs, sugar, butter, and {thing} for decoration. "
            f"1. Mix the dry ingredients. 2. Beat in the eggs and butter until smooth. 3. Bake at 180 C "
            f"for {20 + c} minutes. 4. Let it cool, then arrange the {thing} on top. For {a} guests, "
            f"make {math.ceil(a / 8)} batches. Tip: prepare the decoration the day before."
        )
    elif kind == 5:
        q = f"Why did {topic} matter so much, and what happened in {city} because of it? Answer as a historian."
        r = (
            f"Historians point to three reasons. First, {topic} changed how ordinary people worked and "
            f"lived. Second, it shifted power between institutions. Third, it spread new ideas quickly. "
            f"In {city}, merchants and officials adapted within a generation, and local archives show "
            f"new guilds, new taxes and new schools appearing in the following {c * 10} years."
        )
    elif kind == 6:
        q = f"Write a short, polite email from {name} to {other} asking to move our meeting about {thing}."
        r = (
            f"Subject: Moving our meeting about {thing}\n\nDear {other},\n\nI hope you are well. Would it be "
            f"possible to move our meeting from Tuesday to Thursday at {c} pm? Something urgent came up "
            f"and I would like to give the {thing} order the attention it deserves. Please let me know if "
            f"that works for you, or suggest another time.\n\nBest regards,\n{name}"
        )
    elif kind == 7:
        q = f"Write a four-line poem about {city} at night, mentioning {thing}."
        r = (
            f"The lamps of {city} hum along the quay,\nwhere {thing} drift like thoughts I cannot say;\n"
            f"the river keeps the secrets of the day,\nand morning comes to carry them away.\n\nThe poem uses "
            f"an AAAA rhyme and iambic rhythm, with the image of {thing} standing for memories."
        )
    elif kind == 8:
        q = f"Write an SQL query listing customers from {city} who bought more than {c} {thing} in {2000 + b}."
        r = (
            f"SELECT c.id, c.name, SUM(o.quantity) AS total\nFROM customers AS c\nJOIN orders AS o ON "
            f"o.customer_id = c.id\nWHERE c.city = '{city}' AND o.item = '{thing}'\n  AND o.year = {2000 + b}\n"
            f"GROUP BY c.id, c.name\nHAVING SUM(o.quantity) > {c}\nORDER BY total DESC;\n"
            "The HAVING clause filters after aggregation, which a WHERE clause cannot do."
        )
    elif kind == 9:
        q = f"A ball is dropped from {a} meters. Ignoring air, how long does it take to hit the ground?"
        t = math.sqrt(2 * a / 9.81)
        r = (
            f"Use h = g t^2 / 2 with g = 9.81 m/s^2. Solving for t gives t = sqrt(2h / g) = "
            f"sqrt(2 * {a} / 9.81) = sqrt({2 * a / 9.81:.3f}) = {t:.2f} seconds. The impact speed is "
            f"v = g t = {9.81 * t:.1f} m/s. Air resistance would make the fall slightly longer for light "
            "objects, but for a dense ball over this height the estimate is good."
        )
    elif kind == 10:
        q = f"Is this review positive or negative? '{name} said the {thing} arrived late but worked perfectly.'"
        r = (
            f"Mostly positive. The review mentions one problem, the late delivery, but the main point is "
            f"that the {thing} worked perfectly, which is what a buyer cares about most. A sentiment "
            f"score on a one-to-five scale would be about four. Signals: 'perfectly' is strongly "
            "positive; 'late' is mildly negative and about the shipping, not the product."
        )
    else:
        q = f"Plan a {c}-day trip to {city} for {name}, who loves museums and {thing}."
        r = (
            f"Day 1: arrive in {city}, walk the old town, dinner near the river. Day 2: the main art "
            f"museum in the morning, a market famous for {thing} in the afternoon. Day 3: a day trip to "
            f"the coast or the hills. Remaining days: smaller museums, a cooking class, and a free "
            f"afternoon. Book museum tickets online; many close on Mondays."
        )
    return f"{q} {_FILLER}", r


def bench_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` made-up (prompt, response) pairs, cycling through the twelve kinds of task."""
    rng = random.Random(seed)
    return [_pair(i % 12, rng) for i in range(n)]


# -- the measurements -----------------------------------------------------------------------------


def _batches(featurizer, pairs, batch_size):
    """Encoded batches (ids, mask, target) exactly as the featurizer builds them."""
    import torch

    from treesynth_core.coverage.features.tokens import encode

    encoded = [encode(featurizer.tokenizer, p, r, featurizer.max_tokens) for p, r in pairs]
    out = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), featurizer._pad_id)
        mask = torch.zeros((len(chunk), width), dtype=torch.bool)
        target = torch.zeros((len(chunk), width), dtype=torch.bool)
        for i, (row, tg) in enumerate(chunk):
            ids[i, : len(row)], mask[i, : len(row)], target[i, : len(row)] = torch.tensor(row), True, torch.tensor(tg)
        out.append((ids.to(featurizer.device), mask.to(featurizer.device), target.to(featurizer.device)))
    return out


def _loss(featurizer, ids, mask, target):
    import torch.nn.functional as F  # noqa: N812

    from treesynth_core.coverage.features.gradients import _per_sample_mean_ce

    logits = featurizer.model(input_ids=ids, attention_mask=mask.long(), use_cache=False).logits
    return _per_sample_mean_ce(F, logits, ids, target).sum()


def _sync(featurizer):
    import torch

    if featurizer.device.type == "cuda":
        torch.cuda.synchronize()


def floor_time(featurizer, batches) -> float:
    """Seconds for a plain forward + backward (parameter gradients on) of every batch, in the
    featurizer's precision (bf16 autocast for a bf16 featurizer)."""
    import torch

    params = [p for p in featurizer.model.parameters()]
    for p in params:
        p.requires_grad_(True)
    try:
        _sync(featurizer)
        start = time.perf_counter()
        for ids, mask, target in batches:
            featurizer.model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                with featurizer.precision():
                    loss = _loss(featurizer, ids, mask, target)
                loss.backward()
        _sync(featurizer)
        return time.perf_counter() - start
    finally:
        featurizer.model.zero_grad(set_to_none=True)
        for p in params:
            p.requires_grad_(False)


def exact_gradients(featurizer, pairs, store, *, on_sample=None) -> tuple[float, np.ndarray]:
    """Full flattened gradient of each sample (batch 1, plain autograd) into ``store`` rows, as
    bfloat16 scaled to unit norm; returns (seconds spent on gradient + flatten, exact norms).

    The parameters' ``.grad`` are views into one flat buffer, so autograd writes the flattened
    gradient in place (no per-sample allocation or concatenation: the naive method at its best)."""
    import torch

    named = list(featurizer.model.named_parameters())
    flat = torch.zeros(sum(p.numel() for _, p in named), device=featurizer.device)
    unit = torch.empty_like(flat)
    offset = 0
    for _, p in named:
        p.requires_grad_(True)
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    spent, norms = 0.0, []
    try:
        for i, batch in enumerate(_batches(featurizer, pairs, 1)):
            _sync(featurizer)
            start = time.perf_counter()
            flat.zero_()
            with torch.enable_grad():
                _loss(featurizer, *batch).backward()
            _sync(featurizer)
            spent += time.perf_counter() - start
            norm = flat.norm().item()
            norms.append(norm)
            store[i].copy_(torch.div(flat, max(norm, 1e-30), out=unit))
            if on_sample:
                on_sample(i, {n: p.grad for n, p in named})
    finally:
        for _, p in named:
            p.grad = None
            p.requires_grad_(False)
    return spent, np.array(norms)


def gram(store, chunk: int = 1 << 22) -> np.ndarray:
    """Row Gram matrix of a (n, m) bfloat16 tensor, in float64, column chunk by column chunk."""
    import torch

    n, m = store.shape
    out = torch.zeros((n, n), dtype=torch.float64)
    block = torch.empty((n, chunk))
    for start in range(0, m, chunk):
        width = min(chunk, m - start)
        part = block[:, :width]
        part.copy_(store[:, start : start + width])
        out += (part @ part.T).double()
    return out.numpy()


def naive_projection_time(featurizer, store, *, batch: int, fraction: float, chunk: int = 1 << 16) -> float:
    """Seconds per sample of a dense seeded Rademacher projection of the full gradient, regenerated
    chunk by chunk and applied to ``batch`` buffered gradients at once; timed on ``fraction`` of
    the chunks and scaled up (every chunk costs the same)."""
    import torch

    n_params = store.shape[1]
    chunks = math.ceil(n_params / chunk)
    timed = max(1, round(chunks * fraction))
    grads = store[:batch, : timed * chunk].float().to(featurizer.device)  # values do not matter for timing
    out = torch.zeros((grads.shape[0], featurizer.dim), device=featurizer.device)
    gen = torch.Generator(device=featurizer.device)
    _sync(featurizer)
    start = time.perf_counter()
    for c in range(timed):
        gen.manual_seed(featurizer.seed * 1_000_003 + c)
        lo, hi = c * chunk, min(grads.shape[1], (c + 1) * chunk)
        signs = torch.randint(
            0, 2, (hi - lo, featurizer.dim), generator=gen, dtype=torch.float32, device=featurizer.device
        )
        out += grads[:, lo:hi] @ signs.mul_(2).sub_(1)
    _sync(featurizer)
    elapsed = (time.perf_counter() - start) * chunks / timed
    return elapsed / grads.shape[0]


#: SmolLM2-135M's architecture (as its GGUF and config.json give it), for ``--random-weights``.
SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def random_proxy(layers: int | None, seed: int):
    """(model, tokenizer, label): SmolLM2-135M's architecture with seeded random weights (``layers``
    overrides its 30 layers) and a byte-level tokenizer built offline (a token is a byte: samples
    are still cut to ``--tokens`` tokens, so the compute per sample is the real model's)."""
    import torch
    import transformers

    from tests.tiny_models import tiny_tokenizer

    config = dict(SMOLLM2_135M, num_hidden_layers=layers or SMOLLM2_135M["num_hidden_layers"])
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    label = "SmolLM2-135M-random" + (f"-{layers}L" if layers else "")
    return model, tiny_tokenizer(), label


def speed(featurizer, pairs, batch_size: int, floor_batches: int) -> dict:
    """Features of every pair in batches of ``batch_size`` (timed), and the floor on the first
    ``floor_batches`` batches, interleaved with ours batch by batch so that both see the same load."""
    import torch

    batches = _batches(featurizer, pairs, batch_size)
    featurizer.features_for_texts(pairs[:batch_size], batch_size=batch_size)  # warm-up
    floor_time(featurizer, batches[:1])
    if featurizer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    features, ours, paired, floor, paired_cpu, floor_cpu = [], 0.0, 0.0, 0.0, 0.0, 0.0
    for i, batch in enumerate(batches):
        cpu, start = time.process_time(), time.perf_counter()
        chunk = pairs[i * batch_size : (i + 1) * batch_size]
        features.append(featurizer.features_for_texts(chunk, batch_size=batch_size))
        _sync(featurizer)
        spent, spent_cpu = time.perf_counter() - start, time.process_time() - cpu
        ours += spent
        if i < floor_batches:
            paired, paired_cpu = paired + spent, paired_cpu + spent_cpu
            cpu = time.process_time()
            floor += floor_time(featurizer, [batch])
            floor_cpu += time.process_time() - cpu
    n, n_floor = len(pairs), min(len(pairs), floor_batches * batch_size)
    peak = torch.cuda.max_memory_allocated() / 2**30 if featurizer.device.type == "cuda" else None
    return {
        "features": np.concatenate(features),
        "rate": n / ours,
        "floor_rate": n_floor / floor,
        "ratio": paired / floor,
        "ratio_cpu": paired_cpu / max(floor_cpu, 1e-9),
        "peak": peak,
    }


def profile(featurizer, pairs, batch_size: int, batches: int, rows: int = 20) -> None:
    """torch.profiler over ``batches`` batches of ours (after a warm-up), then over the floor on the
    same batches: the top ``rows`` ops by self CUDA time (on a GPU) and by self CPU time, ops a
    batch, and how much of the wall time the GPU was busy (the rest it waited for the host: launches,
    Python, syncs). The wall time without the profiler is printed too: the profiler slows the host."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = featurizer.device.type == "cuda"
    chunks = [c for c in (pairs[i * batch_size : (i + 1) * batch_size] for i in range(batches)) if c]
    floor_in = _batches(featurizer, [p for c in chunks for p in c], batch_size)
    for _ in range(2):  # warm-up: allocator, kernel choices, the featurizer's first-batch checks
        featurizer.features_for_texts(chunks[0], batch_size=batch_size)
        floor_time(featurizer, floor_in[:1])
    _sync(featurizer)
    start = time.perf_counter()
    for chunk in chunks:
        featurizer.features_for_texts(chunk, batch_size=batch_size)
    _sync(featurizer)
    plain = {
        "ours": (time.perf_counter() - start) / len(chunks),
        "floor": floor_time(featurizer, floor_in) / len(chunks),
    }
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    title = f"{featurizer.dtype} batch {batch_size}, {len(chunks)} batches"
    lines = []
    for what, run in (
        ("ours", lambda: [featurizer.features_for_texts(c, batch_size=batch_size) for c in chunks]),
        ("floor", lambda: floor_time(featurizer, floor_in)),
    ):
        with torch_profile(activities=activities) as prof:
            start = time.perf_counter()
            run()
            _sync(featurizer)
            wall = (time.perf_counter() - start) / len(chunks)
        events = prof.events()
        if what == "ours":
            table = prof.key_averages()
            for key, label in (("self_device_time_total", "CUDA"), ("self_cpu_time_total", "CPU")):
                if label == "CUDA" and not cuda:
                    continue
                print(f"\n-- ours, top {rows} ops by self {label} time ({title}) --")
                try:
                    print(table.table(sort_by=key, row_limit=rows, max_name_column_width=70))
                except Exception as error:  # a profiler of another version: keep going
                    print(f"(no table: {type(error).__name__}: {error})")
        ops = sum(1 for e in events if e.device_type.name == "CPU" and e.name.startswith("aten::"))
        line = (
            f"{what:<5} {title}: {1000 * wall:.1f} ms a batch profiled, {1000 * plain[what]:.1f} without the "
            f"profiler; {ops / len(chunks):.0f} aten ops a batch (nested ones too)"
        )
        if cuda:
            device = [e for e in events if e.device_type.name == "CUDA"]
            busy = _busy_seconds([(e.time_range.start, e.time_range.end) for e in device]) / 1e6 / len(chunks)
            line += (
                f"; {len(device) / len(chunks):.0f} GPU ops a batch (kernels, copies), GPU busy {1000 * busy:.1f} ms "
                f"a batch: {busy / wall:.0%} of the profiled wall time, {min(1.0, busy / plain[what]):.0%} of the "
                "unprofiled (the rest: the GPU waits for the host)"
            )
        lines.append(line)
    print()
    for line in lines:
        print(line, flush=True)


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals (the GPU's busy time, in the intervals' unit)."""
    busy, end = 0.0, -math.inf
    for lo, hi in sorted(intervals):
        if hi > end:
            busy += hi - max(lo, end)
            end = hi
    return busy


def cosine_pearson(X: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    """(Pearson, mean |difference|) between the pairwise cosines of the rows of X and of Y."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    iu = np.triu_indices(len(X), 1)
    a, b = (X @ X.T)[iu], (Y @ Y.T)[iu]
    return float(np.corrcoef(a, b)[0, 1]), float(np.abs(a - b).mean())


def exact_cosines(featurizer, pairs) -> tuple[np.ndarray, float]:
    """(cosine matrix, seconds a sample) of the exact full gradients of ``pairs`` (batch 1, float32),
    kept as bfloat16 in a temporary memory-mapped file (deleted afterwards)."""
    import torch

    n, n_params = len(pairs), sum(p.numel() for p in featurizer.model.parameters())
    with tempfile.TemporaryDirectory(prefix="gvendi-bench-") as tmp:
        path = Path(tmp) / "grads.bf16"
        store = torch.from_file(str(path), shared=True, size=n * n_params, dtype=torch.bfloat16).view(n, n_params)
        grad_s, _ = exact_gradients(featurizer, pairs, store)
        exact = gram(store)
        del store
    d = np.sqrt(np.diag(exact))
    return exact / np.outer(d, d), grad_s / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="proxy model (default: the embedded SmolLM2-135M GGUF)")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="SmolLM2-135M's architecture with random weights and a byte-level tokenizer (no model files needed)",
    )
    parser.add_argument("--layers", type=int, default=None, help="with --random-weights: this many layers")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the GPU when torch sees one)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "bf16", "both"],
        help="the featurizer's precision; both: fp32 then bf16, and how far bf16 features are from fp32 ones",
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--batch", default="8", help="batch size, or several: 8,32,64")
    parser.add_argument("--samples", type=int, default=64, help="samples for speed and fidelity")
    parser.add_argument("--floor-batches", type=int, default=3, help="batches also timed for the floor")
    parser.add_argument(
        "--exact-samples",
        type=int,
        default=None,
        help="fidelity against exact gradients on the first N samples (default: all; with --speed-only: none)",
    )
    parser.add_argument("--naive-batch", type=int, default=8, help="gradients buffered per dense projection")
    parser.add_argument("--naive-fraction", type=float, default=1 / 64, help="share of the chunks timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="features/s and the floor (and --exact-samples fidelity), no naive method",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing: torch.profiler over --profile-batches batches at each --batch and --dtype "
        "(top ops by self CUDA and CPU time, GPU busy vs wall), ours and the floor",
    )
    parser.add_argument("--profile-batches", type=int, default=3, help="batches profiled (after a warm-up)")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch.split(",")]

    import torch

    from treesynth_core.coverage.features.gradients import GradientFeaturizer
    from treesynth_core.coverage.features.proxy_model import load_proxy, resolve_dtype

    began, load = time.perf_counter(), os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}, "
        f"load average {load:.1f} on {os.cpu_count()} cores"
    )
    start = time.perf_counter()
    model, tokenizer, label = random_proxy(args.layers, args.seed) if args.random_weights else load_proxy(args.model)
    dtypes = ["fp32", "bf16"] if args.dtype == "both" else [resolve_dtype(args.dtype, args.device)]

    def featurizer_in(dtype: str) -> GradientFeaturizer:
        return GradientFeaturizer.from_model(
            model,
            tokenizer,
            label=label,
            dim=args.dim,
            seed=args.seed,
            max_tokens=args.tokens,
            device=args.device,
            dtype=dtype,
        )

    featurizer = featurizer_in(dtypes[0])
    n_params = sum(p.numel() for p in featurizer.model.parameters())
    took = time.perf_counter() - start
    print(f"loaded {label} ({n_params / 1e6:.1f}M parameters) on {featurizer.device} in {took:.1f} s")
    if featurizer.device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}, bf16 supported: {torch.cuda.is_bf16_supported()}")
    pairs = bench_pairs(max(args.samples, max(batch_sizes) * args.profile_batches if args.profile else 0), args.seed)
    lengths = [len(featurizer_encode(featurizer, p, r)[0]) for p, r in pairs]
    print(f"samples: {len(pairs)} prompt+response pairs of {min(lengths)}-{max(lengths)} tokens, d={args.dim}")

    if args.profile:
        for dtype in dtypes:
            if featurizer.dtype != dtype:
                featurizer.close()
                featurizer = featurizer_in(dtype)
            for b in batch_sizes:
                profile(featurizer, pairs, b, args.profile_batches)
        print(f"\ntotal {time.perf_counter() - began:.0f} s")
        return 0

    # 1. speed: ours on every batch, the floor (a plain forward+backward in the same precision) on the first few
    print(
        f"\n{'dtype':<6}{'batch':>6}{'samples/s':>11}{'ms/sample':>11}{'floor/s':>10}{'overhead':>10}"
        f"{'(CPU)':>7}{'peak GiB':>10}"
    )
    runs: dict[tuple[str, int], dict] = {}
    for dtype in dtypes:
        if featurizer.dtype != dtype:
            featurizer.close()  # its hooks off the shared model
            featurizer = featurizer_in(dtype)
        for b in batch_sizes:
            r = runs[dtype, b] = speed(featurizer, pairs, b, args.floor_batches)
            peak = f"{r['peak']:.1f}" if r["peak"] is not None else "-"
            print(
                f"{dtype:<6}{b:>6}{r['rate']:>11.2f}{1000 / r['rate']:>11.1f}{r['floor_rate']:>10.2f}"
                f"{r['ratio']:>10.2f}{r['ratio_cpu']:>7.2f}{peak:>10}",
                flush=True,
            )
    print(
        f"(overhead: our time / the floor's on the first {args.floor_batches} batches, wall clock and CPU time; "
        "target <= 1.3)"
    )
    if len(dtypes) == 2:
        print("\nbf16 features against fp32 features (same samples, same batches):")
        for b in batch_sizes:
            X, Y = runs["fp32", b]["features"], runs["bf16", b]["features"]
            pearson, err = cosine_pearson(X, Y)
            same = np.sum(X.astype(np.float64) * Y, axis=1)
            print(
                f"  batch {b}: Pearson of pairwise cosines {pearson:.5f} (|difference| mean {err:.5f}); "
                f"cos(bf16, fp32) per sample mean {same.mean():.5f}, min {same.min():.5f}"
            )

    exact_n = args.exact_samples if args.exact_samples is not None else (0 if args.speed_only else len(pairs))
    if exact_n:
        # 2. fidelity: cosines of the features against those of the exact gradients (fp32, batch 1)
        chosen = pairs[:exact_n]
        exact, grad_s = exact_cosines(featurizer, chosen)
        iu = np.triu_indices(len(chosen), 1)
        print(
            f"\nexact full gradients (batch 1, fp32, plain autograd): {grad_s:.3f} s/sample; exact cosines "
            f"{exact[iu].min():.3f}..{exact[iu].max():.3f} (sd {exact[iu].std():.3f})"
        )
        for dtype in dtypes:
            X = runs[dtype, batch_sizes[-1]]["features"][:exact_n].astype(np.float64)
            ours_cos = (X @ X.T)[iu]
            err = np.abs(ours_cos - exact[iu])
            print(
                f"fidelity of {dtype} features (batch {batch_sizes[-1]}) on {exact_n} samples ({len(iu[0])} pairs): "
                f"Pearson {np.corrcoef(ours_cos, exact[iu])[0, 1]:.4f} (target >= 0.95), "
                f"|error| mean {err.mean():.4f}, max {err.max():.4f}"
            )
    if args.speed_only:
        print(f"\ntotal {time.perf_counter() - began:.0f} s")
        return 0

    # 3. the naive method: full gradient per sample, then a dense projection
    b = batch_sizes[-1]
    ours = 1 / runs[dtypes[-1], b]["rate"]
    with tempfile.TemporaryDirectory(prefix="gvendi-bench-") as tmp:
        path = Path(tmp) / "grads.bf16"
        n = min(len(pairs), max(args.naive_batch, 1))
        store = torch.from_file(str(path), shared=True, size=n * n_params, dtype=torch.bfloat16).view(n, n_params)
        grad_s, _ = exact_gradients(featurizer, pairs[:n], store)
        proj_s = naive_projection_time(featurizer, store, batch=args.naive_batch, fraction=args.naive_fraction)
        del store
    naive = grad_s / n + proj_s
    print(
        f"\nnaive: full gradient per sample, then a dense seeded Rademacher projection in chunks of "
        f"{1 << 16:,} parameters with {args.naive_batch} gradients buffered: {naive:.2f} s/sample = "
        f"{grad_s / n:.2f} s gradient + {proj_s:.2f} s projection"
    )
    print(f"  (projection timed on {args.naive_fraction:.1%} of the chunks, scaled to all of them)")
    print(f"speedup over naive: {naive / ours:.0f}x (ours: {dtypes[-1]}, batch {b})")
    print(
        f"total {time.perf_counter() - began:.0f} s; load average now {os.getloadavg()[0]:.1f} (was {load:.1f}): "
        "timings on a busy machine are noisy"
    )
    return 0


def featurizer_encode(featurizer, prompt, response):
    from treesynth_core.coverage.features.tokens import encode

    return encode(featurizer.tokenizer, prompt, response, featurizer.max_tokens)


if __name__ == "__main__":
    raise SystemExit(main())
