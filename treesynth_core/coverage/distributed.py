"""Features on Ray: embeddings and gradient features computed by Ray Data workers, written as Parquet
shards plus per-shard, per-leaf d×d Gram partials, so Vendi over any union of leaves comes from summed
partials (:func:`~treesynth_core.coverage.gram.vendi_from_gram`) and no step holds every feature.

One featurizer implementation: a :class:`Recipe` (a small picklable callable) rebuilds the same
featurizer class the single-process path uses, once per Ray actor (``map_batches`` over
:class:`FeatureActor`); each batch goes through its ``features``. Same model, dim, seed and max tokens:
the same vectors as the single-process path (float32 in the project's feature store). Workers ask for
``gpus_per_worker`` GPUs each when the cluster has GPUs, else they run on CPUs.

Written under ``DIR/features/<kind>/``: ``shard-NNNNN.parquet`` (columns ``id``, ``leaf``, ``vector``:
float16), ``shard-NNNNN.grams.npz`` (``leaves``, ``counts``, ``grams``: float64 Σ x̂x̂ᵀ of the shard's
unit rows per leaf, computed from the float32 vectors) and ``manifest.json`` (kind, dim, rows). A rerun
featurizes only the samples no shard holds yet. Ray is the optional extra ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, TreeSynthError
from ..progress import Progress
from ..store.samples import TREE_SET, Sample
from .features.embeddings import Featurizer
from .gram import gram_partial, vendi_from_gram

#: Where a project keeps its feature shards: ``DIR/features/<kind as a file name>/``.
FEATURES_FOLDER = "features"
MANIFEST = "manifest.json"
INSTALL_HINT = 'the Ray engine needs the optional extra: pip install -e ".[ray]"'

#: A zero-argument picklable callable returning the featurizer (built once per worker).
Recipe = Callable[[], Featurizer]


@dataclass(frozen=True)
class RayOptions:
    """How features run on Ray. ``address`` None starts a local Ray (or joins the running one in this
    process); ``"auto"`` or ``"ray://host:port"`` joins a cluster. ``gpus_per_worker`` None: 1 when the
    cluster has GPUs, else 0. ``workers`` None: one per GPU share, else 1 (torch uses every core)."""

    address: str | None = None
    gpus_per_worker: float | None = None
    workers: int | None = None
    batch_size: int = 32
    shard_rows: int = 4096


@dataclass(frozen=True)
class EmbedderRecipe:
    """Rebuilds a sentence-transformers embedder from its spec (None: the embedded MiniLM)."""

    spec: str | None = None

    def __call__(self) -> Featurizer:
        from .features.embeddings import make_embedder

        return make_embedder(self.spec)


@dataclass(frozen=True)
class GradientRecipe:
    """Rebuilds the gradient featurizer of a proxy setting (loaded once per worker process).
    ``dtype``: ``auto`` lets each worker pick (bf16 on a CUDA GPU), so give the driver's resolved
    one (``fp32`` or ``bf16``) when the kind is fixed beforehand: the workers check it."""

    proxy: str | None = None
    max_tokens: int | None = None
    dtype: str = "auto"

    def __call__(self) -> Any:  # a GradientFeaturizer (a Featurizer; its name is a read-only property)
        from .features.gradients import load_featurizer
        from .features.proxy_model import DEFAULT_MAX_TOKENS

        cut = DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens
        return load_featurizer(self.proxy, cut, self.dtype)


@dataclass(frozen=True)
class ShardSet:
    """What a run left in ``folder``: ``rows`` samples in all its shards, ``added`` of them by this run."""

    kind: str
    dim: int
    folder: Path
    rows: int
    added: int
    shards: list[Path] = field(default_factory=list)


class FeatureSink(Protocol):
    def put_features(self, kind: str, vectors: Mapping[int, bytes]) -> None: ...


def leaf_key(sample: Sample) -> str:
    """The partials' group of a sample: its leaf for the tree's samples, ``@set`` for any other set."""
    return sample.leaf_id if sample.sample_set == TREE_SET else f"@{sample.sample_set}"


def shard_folder(project_path: Path, kind: str) -> Path:
    """``DIR/features/<kind>`` with the kind made a safe file name."""
    return Path(project_path) / FEATURES_FOLDER / re.sub(r"[^A-Za-z0-9._-]+", "_", kind)


# -- Ray ------------------------------------------------------------------------------------------


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def connect(options: RayOptions) -> Any:
    """The ``ray`` module, initialized (a local Ray unless ``options.address`` names a cluster)."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(
                address=options.address, log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"could not start or join Ray at {options.address or 'a local Ray'}: {exc}") from None
    context = ray.data.DataContext.get_current()  # our own progress bar reports; Ray Data's would mix in
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def placement(ray: Any, options: RayOptions) -> tuple[float, int]:
    """(GPUs per worker, workers) for this cluster."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    if per > 0 and gpus < per:
        raise ConfigError(f"--gpus-per-worker {per:g}: the Ray cluster has {gpus:g} GPUs")
    workers = options.workers or (max(1, int(gpus // per)) if per > 0 else 1)
    return per, workers


class FeatureActor:
    """A Ray Data ``map_batches`` callable class: builds the featurizer once, then featurizes batches
    of rows (``id``, ``instruction``, ``response``, ``has_response``, ``leaf``) into ``vector`` rows."""

    def __init__(self, recipe: Recipe, kind: str, batch_size: int) -> None:
        self.featurizer = recipe()
        self.batch_size = batch_size
        if self.featurizer.name != kind:
            raise TreeSynthError(f"the Ray worker built the featurizer {self.featurizer.name}, not {kind}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        samples = [
            Sample(
                leaf_id=str(leaf),
                key="",
                instruction=str(text),
                path=[],
                response=str(response) if has else None,
                id=int(i),
            )
            for i, text, response, has, leaf in zip(
                batch["id"], batch["instruction"], batch["response"], batch["has_response"], batch["leaf"], strict=True
            )
        ]
        matrix = np.asarray(self.featurizer.features(samples, batch_size=self.batch_size), dtype=np.float32)
        return {"id": np.asarray(batch["id"], dtype=np.int64), "leaf": batch["leaf"], "vector": matrix}


# -- shards ---------------------------------------------------------------------------------------


def shard_ids(folder: Path) -> set[int]:
    """The sample ids the shards in ``folder`` already hold (reads only the ``id`` column)."""
    import pyarrow.parquet as pq

    ids: set[int] = set()
    for path in sorted(folder.glob("shard-*.parquet")):
        ids.update(int(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


def write_shard(folder: Path, index: int, ids: np.ndarray, leaves: Sequence[str], vectors: np.ndarray) -> Path:
    """One Parquet shard (float16 vectors) and its per-leaf Gram partials (from the float32 vectors)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float16).ravel())
    table = pa.table(
        {
            "id": pa.array(np.asarray(ids, dtype=np.int64)),
            "leaf": pa.array([str(leaf) for leaf in leaves], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    path = folder / f"shard-{index:05d}.parquet"
    pq.write_table(table, path)
    names = sorted(set(map(str, leaves)))
    rows = np.asarray([str(leaf) for leaf in leaves])
    grams = np.stack([gram_partial(vectors[rows == name]).gram for name in names]) if names else np.zeros((0, dim, dim))
    counts = np.asarray([int((rows == name).sum()) for name in names], dtype=np.int64)
    np.savez(folder / f"shard-{index:05d}.grams.npz", leaves=np.asarray(names, dtype=str), counts=counts, grams=grams)
    return path


def read_shards(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of every shard in ``folder`` (for tests and small sets: it loads all)."""
    import pyarrow.parquet as pq

    ids, parts = [], []
    for path in sorted(folder.glob("shard-*.parquet")):
        table = pq.read_table(path)
        column = table.column("vector").combine_chunks()
        dim = column.type.list_size
        ids.append(table.column("id").to_numpy())
        parts.append(column.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(ids), np.concatenate(parts)


def summed_partials(folder: Path, leaves: Iterable[str] | None = None) -> tuple[np.ndarray, int]:
    """(Σ Gram partials, n) over the shards in ``folder`` for the samples of ``leaves`` (None: all),
    one shard's partials in memory at a time."""
    wanted = None if leaves is None else set(leaves)
    total: np.ndarray | None = None
    n = 0
    for path in sorted(folder.glob("shard-*.grams.npz")):
        with np.load(path) as data:
            for name, count, gram in zip(data["leaves"], data["counts"], data["grams"], strict=True):
                if wanted is None or str(name) in wanted:
                    total = gram.copy() if total is None else total + gram
                    n += int(count)
    if total is None:
        return np.zeros((0, 0)), 0
    return total, n


def vendi_of_leaves(folder: Path, leaves: Iterable[str] | None = None, q: float = 1.0) -> float:
    """Vendi (G-Vendi for gradient shards) over the union of ``leaves`` (None: every sample) from the
    summed partials: the dual form, no feature matrix."""
    total, n = summed_partials(folder, leaves)
    return vendi_from_gram(total, n, q) if n else 0.0


# -- the pipeline ---------------------------------------------------------------------------------


def featurize_on_ray(
    samples: Sequence[Sample],
    recipe: Recipe,
    kind: str,
    folder: Path,
    *,
    options: RayOptions = RayOptions(),
    store: FeatureSink | None = None,
    progress: Progress | None = None,
    prune: bool = False,
) -> ShardSet:
    """Featurize the ``samples`` that no shard in ``folder`` holds yet on Ray workers, stream the results
    into new shards of ``options.shard_rows`` rows (and, with ``store``, into the project's feature store
    under ``kind``, float32), and return what the folder holds. ``kind`` must be the recipe's
    featurizer's name (the workers check it). ``prune``: ``samples`` are the whole set, so shards that
    hold any other sample (deleted since) are out of date: the folder is rebuilt (sample ids are never
    reused, so a held id always means the same sample)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST
    old = json.loads(manifest.read_text()) if manifest.is_file() else {}
    if old and old.get("kind") != kind:
        raise TreeSynthError(f"{folder} holds features of {old.get('kind')}, not {kind}")
    done = shard_ids(folder)
    if prune and done - {s.id for s in samples}:
        for path in [*folder.glob("shard-*.parquet"), *folder.glob("shard-*.grams.npz"), manifest]:
            path.unlink(missing_ok=True)
        old, done = {}, set()
    todo = list({s.id: s for s in samples if s.id not in done}.values())
    index = len(list(folder.glob("shard-*.parquet")))
    added, dim = 0, int(old.get("dim", 0))
    if todo:
        ray = connect(options)
        gpus, workers = placement(ray, options)
        rows = [
            {
                "id": s.id,
                "instruction": s.instruction,
                "response": s.response or "",
                "has_response": s.response is not None,
                "leaf": leaf_key(s),
            }
            for s in todo
        ]
        ds = ray.data.from_items(rows).map_batches(
            FeatureActor,
            fn_constructor_kwargs={"recipe": recipe, "kind": kind, "batch_size": options.batch_size},
            batch_size=options.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=gpus,
        )
        for batch in ds.iter_batches(batch_size=options.shard_rows, batch_format="numpy"):
            ids, leaves = np.asarray(batch["id"], dtype=np.int64), [str(x) for x in batch["leaf"]]
            vectors = np.asarray(np.stack(list(batch["vector"])), dtype=np.float32)
            write_shard(folder, index, ids, leaves, vectors)
            if store is not None:
                store.put_features(
                    kind, {int(i): np.ascontiguousarray(v).tobytes() for i, v in zip(ids, vectors, strict=True)}
                )
            index, added, dim = index + 1, added + len(ids), vectors.shape[1]
            if progress:
                progress(added, len(todo), f"{kind}: shard {index}")
    rows_total = len(done) + added
    manifest.write_text(json.dumps({"kind": kind, "dim": dim, "rows": rows_total}, indent=1) + "\n")
    return ShardSet(kind, dim, folder, rows_total, added, sorted(folder.glob("shard-*.parquet")))


def project_features_on_ray(
    project: Any,
    jobs: Sequence[tuple[Recipe, str]],
    options: RayOptions = RayOptions(),
    *,
    progress: Progress | None = None,
) -> list[ShardSet]:
    """Featurize every sample of a project (each sample set) on Ray for each (recipe, kind) of ``jobs``,
    into ``DIR/features/<kind>/`` and the project's feature store; shards that hold deleted samples are
    rebuilt."""
    samples: list[Sample] = []
    for name in project.sample_sets():
        samples += project.samples(sample_set=name)
    return [
        featurize_on_ray(
            samples,
            recipe,
            kind,
            shard_folder(project.path, kind),
            options=options,
            store=project,
            progress=progress,
            prune=True,
        )
        for recipe, kind in jobs
    ]
