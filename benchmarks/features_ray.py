"""Features on Ray against the single-process path: samples/s of each, and their ratio, in the same run.

Run: ``.venv/bin/python benchmarks/features_ray.py`` (needs the extra: ``pip install -e ".[ray]"``;
``--help`` for options). Offline: the embedded all-MiniLM-L6-v2 and, with ``--gradients N``, the embedded
SmolLM2-135M proxy; the samples are made up here.

It prints, per space (embeddings, gradient features):

* **single process**: ``featurizer.features`` over the samples, model already loaded (the floor);
* **Ray**: :func:`~treesynth_core.coverage.distributed.featurize_on_ray` on a local Ray with every CPU
  (workers load the model themselves: that load is counted, Ray's own start is not), writing the Parquet
  shards and Gram partials; ratio = Ray samples/s ÷ single-process samples/s;
* **GPU**: the single-process samples/s on CUDA when torch sees a GPU, else the line
  ``GPU: unmeasured here: no GPU``.

On one machine Ray adds process and serialization overhead; its gain is more workers (a cluster, GPUs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from treesynth_core.coverage import distributed as R  # noqa: E402
from treesynth_core.store.samples import Sample  # noqa: E402

_THINGS = ["apples", "bicycles", "notebooks", "candles", "tickets", "marbles", "stamps", "lemons", "kites"]
_NAMES = ["Ava", "Ben", "Chloe", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Ines", "Jonas"]


def made_up(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        a, b = _NAMES[i % len(_NAMES)], _THINGS[(i * 7) % len(_THINGS)]
        text = f"{a} buys {i % 13 + 2} {b} and gives away {i % 5 + 1}. How many {b} are left? ({i})"
        out.append(
            Sample(
                leaf_id=f"leaf{i % 8}",
                key=str(i),
                instruction=text,
                path=[],
                response=f"{i % 13 + 1 - i % 5}.",
                id=i + 1,
            )
        )
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.2f} samples/s ({n} in {seconds:.1f} s)"


def bench(label: str, samples: list[Sample], make: Any, recipe: R.Recipe, batch: int, workers: int) -> None:
    featurizer = make("cpu")
    featurizer.features(samples[:2], batch_size=batch)  # load and warm up
    start = time.perf_counter()
    featurizer.features(samples, batch_size=batch)
    single = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        options = R.RayOptions(workers=workers, batch_size=batch, shard_rows=max(64, len(samples) // 4))
        start = time.perf_counter()
        R.featurize_on_ray(samples, recipe, featurizer.name, Path(folder) / "shards", options=options)
        ray_s = time.perf_counter() - start
    print(f"{label}: single process {rate(len(samples), single)}")
    print(
        f"{label}: Ray, {workers} workers {rate(len(samples), ray_s)}; ratio {single / ray_s:.2f}x the single process"
    )
    import torch

    if not torch.cuda.is_available():
        print(f"{label}: GPU: unmeasured here: no GPU")
        return
    gpu = make("cuda")
    gpu.features(samples[:2], batch_size=batch)
    torch.cuda.synchronize()
    start = time.perf_counter()
    gpu.features(samples, batch_size=batch)
    torch.cuda.synchronize()
    print(f"{label}: GPU ({torch.cuda.get_device_name()}) {rate(len(samples), time.perf_counter() - start)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", type=int, default=400, help="samples to embed (0: skip)")
    parser.add_argument("--gradients", type=int, default=0, help="samples for gradient features (0: skip; slow on CPU)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"CPUs: {os.cpu_count()}; Ray {ray.__version__}")
    if args.embeddings:
        from treesynth_core.coverage.features.embeddings import SentenceTransformerEmbedder

        bench(
            "embeddings (MiniLM)",
            made_up(args.embeddings),
            lambda device: SentenceTransformerEmbedder(device=device),
            R.EmbedderRecipe(None),
            64,
            args.workers,
        )
    if args.gradients:
        from treesynth_core.coverage.features.gradients import GradientFeaturizer

        bench(
            "gradients (SmolLM2-135M)",
            made_up(args.gradients),
            lambda device: GradientFeaturizer(device=device),
            R.GradientRecipe(),
            8,
            args.workers,
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
