"""The diversity report of a project: the tree's samples against the flat baseline, at equal n.

:func:`coverage_report` embeds the samples (only those not embedded before), optionally computes
gradient features, and returns one JSON-serializable dict:

- ``n``: the common size every set is scored at (the smaller set's size, or less if asked), drawn
  with ``seed``; every score grows with n, so the report never compares sets of different sizes;
- ``sets``: per sample set (``tree``, ``baseline``): Vendi over embeddings (order 1, plus orders
  0.5, 2 and inf), mean pairwise cosine (TreeSynth's figure, lower is better), distinct-1/2 and,
  with a gradient featurizer, G-Vendi;
- ``gain``: tree minus baseline for each figure;
- ``leaves`` and ``subtrees``: per-leaf and per-first-level-subtree Vendi and mean cosine, each
  table at its own equal n, with flags for thin, empty, collapsed and orphaned leaves;
- ``curve``: Vendi and mean cosine of each set at growing n (nested seeded subsamples), so the
  gain is visible at every size;
- ``notes`` (what a reader should know) and ``baseline_missing`` (a baseline was asked for and
  there is none: the command line says how to make one, the app shows its button).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import TreeSynthError
from ..progress import Progress
from ..store.samples import BASELINE_SET, TREE_SET, Sample
from ..tree.model import Tree
from . import diversity
from .features.embeddings import FeatureStore, Featurizer, ensure_features

#: Vendi orders reported besides q = 1.
VENDI_ORDERS: tuple[float, ...] = (0.5, 1.0, 2.0, math.inf)
#: A leaf is "thin" below max(THIN_MIN, half the median leaf size).
THIN_MIN = 3
#: A leaf is "collapsed" when its mean pairwise cosine is above this ...
COLLAPSED_COSINE = 0.9
#: ... or its Vendi is below this fraction of its n (n >= THIN_MIN).
COLLAPSED_VENDI_RATIO = 0.25
#: Sizes a diversity-vs-n curve is computed at (each set's own size is added).
CURVE_SIZES: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)


class CoverageStore(FeatureStore, Protocol):
    def tree(self) -> Tree: ...

    def samples(self, *, sample_set: str = TREE_SET, leaf_id: str | None = None) -> list[Sample]: ...


def _num(value: float | None) -> float | None:
    """A JSON-safe float (NaN and infinities become None)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _q_name(q: float) -> str:
    return "inf" if math.isinf(q) else f"{q:g}"


def set_scores(X: np.ndarray, texts: Sequence[str]) -> dict[str, Any]:
    """Every embedding-based figure of one set of samples (already subsampled to the common n)."""
    spectrum = diversity.vendi_spectrum(X) if len(texts) else np.zeros(0)
    vendi_q = {_q_name(q): _num(diversity.vendi_from_eigenvalues(spectrum, q)) for q in VENDI_ORDERS}
    return {
        "n": len(texts),
        "vendi": vendi_q["1"],
        "vendi_q": vendi_q,
        "mean_cosine": _num(diversity.mean_pairwise_cosine(X)) if len(texts) else None,
        "distinct_1": _num(diversity.distinct_n(texts, 1)),
        "distinct_2": _num(diversity.distinct_n(texts, 2)),
    }


def _g_vendi(grads: np.ndarray) -> float | None:
    """G-Vendi of gradient features; all-zero rows (a sample with no token to predict) are left out."""
    if grads.shape[0] == 0:
        return None
    kept = grads[np.linalg.norm(grads, axis=1) > 0]
    return _num(diversity.vendi_score(kept)) if kept.shape[0] else None


def _subset_scores(
    project: CoverageStore,
    samples: Sequence[Sample],
    subset: Sequence[Sample],
    X: np.ndarray,
    gradient_featurizer: Featurizer | None,
    progress: Progress,
) -> dict[str, Any]:
    """The scores of one set from its equal-n ``subset`` (embeddings ``X``); G-Vendi with a featurizer."""
    scores = {"total": len(samples), **set_scores(X, [s.instruction for s in subset])}
    if gradient_featurizer is not None:
        scores["g_vendi"] = _g_vendi(ensure_features(project, subset, gradient_featurizer, progress=progress))
    return scores


def curve(X: np.ndarray, *, seed: int = 0, sizes: Sequence[int] = CURVE_SIZES) -> list[dict[str, Any]]:
    """Vendi and mean cosine of nested seeded subsamples of growing size (and of all rows)."""
    total = X.shape[0]
    points = sorted({s for s in sizes if s < total} | ({total} if total else set()))
    out = []
    for size in points:
        part = X[diversity.subsample_indices(total, size, seed)]
        out.append(
            {
                "n": size,
                "vendi": _num(diversity.vendi_score(part)),
                "mean_cosine": _num(diversity.mean_pairwise_cosine(part)),
            }
        )
    return out


def _flags(count: int, n: int, vendi: float | None, cosine: float | None, thin_below: int) -> list[str]:
    flags = []
    if count == 0:
        return ["empty"]
    if count < thin_below:
        flags.append("thin")
    if n >= THIN_MIN and (
        (cosine is not None and cosine > COLLAPSED_COSINE) or (vendi is not None and vendi / n < COLLAPSED_VENDI_RATIO)
    ):
        flags.append("collapsed")
    return flags


def leaf_table(tree: Tree, samples: Sequence[Sample], X: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """Per-leaf scores at one equal n (the smallest leaf that is not thin), thin leaves at their own n.

    Rows cover every approved leaf (flagged ``empty`` when it has no sample) and every leaf id that
    has samples but is no longer an active leaf of the tree (flagged ``orphan``).
    """
    labels = _node_labels(tree)
    counts: dict[str, int] = {leaf.id: 0 for leaf in tree.leaves(approved_only=True)}
    for sample in samples:
        counts[sample.leaf_id] = counts.get(sample.leaf_id, 0) + 1
    nonempty = [c for c in counts.values() if c]
    thin_below = max(THIN_MIN, math.ceil(statistics.median(nonempty) / 2)) if nonempty else THIN_MIN
    solid = [c for c in counts.values() if c >= thin_below]
    leaf_n = min(solid) if solid else None
    scores = diversity.per_group_scores(X, [s.leaf_id for s in samples], n=leaf_n, seed=seed) if samples else {}
    active = {leaf.id for leaf in tree.leaves()}
    rows = []
    for leaf_id, count in counts.items():
        score = scores.get(leaf_id)
        n = score.n if score else 0
        vendi = _num(score.vendi) if score else None
        cosine = _num(score.mean_cosine) if score else None
        flags = _flags(count, n, vendi, cosine, thin_below)
        if leaf_id not in active:
            flags.append("orphan")
        rows.append(
            {
                "leaf_id": leaf_id,
                "path": labels.get(leaf_id, leaf_id),
                "count": count,
                "n": n,
                "vendi": vendi,
                "mean_cosine": cosine,
                "flags": flags,
            }
        )
    rows.sort(key=lambda r: (r["vendi"] is None, r["vendi"] if r["vendi"] is not None else 0.0))
    note = (
        f"leaves are compared at equal n = {leaf_n} (seeded subsample); leaves under {thin_below} samples "
        "are thin and scored on all of theirs"
        if leaf_n
        else "no leaf has enough samples for an equal-n comparison"
    )
    return {"n": leaf_n, "thin_below": thin_below, "note": note, "rows": rows}


def subtree_table(
    tree: Tree, samples: Sequence[Sample], X: np.ndarray, *, depth: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Scores of each subtree rooted at ``depth`` (1: the root's split), all at the size of the
    smallest one. Samples of leaves shallower than ``depth`` are left out."""
    top: dict[str, str] = {}
    for node_id in tree.nodes:
        chain = [*tree.ancestors(node_id), tree.node(node_id)]
        if len(chain) > depth:
            top[node_id] = chain[depth].id
    groups = [top.get(s.leaf_id) for s in samples]
    members = [i for i, g in enumerate(groups) if g is not None]
    if not members:
        return {"n": None, "depth": depth, "note": f"the tree has no node at depth {depth}", "rows": []}
    labels = [groups[i] for i in members]
    sizes: dict[str, int] = {}
    for label in labels:
        assert label is not None
        sizes[label] = sizes.get(label, 0) + 1
    common = min(sizes.values())
    scores = diversity.per_group_scores(X[members], labels, n=common, seed=seed)
    node_labels = _node_labels(tree)
    rows = [
        {
            "node_id": node_id,
            "path": node_labels.get(node_id, node_id),
            "count": score.count,
            "n": score.n,
            "vendi": _num(score.vendi),
            "mean_cosine": _num(score.mean_cosine),
        }
        for node_id, score in scores.items()
        if node_id is not None
    ]
    note = f"subtrees at depth {depth} are compared at equal n = {common} (seeded subsample)"
    return {"n": common, "depth": depth, "note": note, "rows": rows}


def _node_labels(tree: Tree) -> dict[str, str]:
    from .maps import leaf_labels

    return leaf_labels(tree)


def coverage_report(
    project: CoverageStore,
    *,
    embedder: Featurizer,
    gradient_featurizer: Featurizer | None = None,
    include_baseline: bool = True,
    n: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """All diversity figures of a project, JSON-serializable (see the module docstring).

    Parameters
    ----------
    project
        The project (features are read from and written to it).
    embedder
        Text embedder, e.g. :class:`~treesynth_core.coverage.features.embeddings.SentenceTransformerEmbedder`.
    gradient_featurizer
        When given, G-Vendi is computed over its features (only for the equal-n subsamples).
    include_baseline
        Score the flat baseline (sample set ``"baseline"``) beside the tree, when it has samples.
    n
        Score every set at this size at most (default: the smallest set's size).
    seed
        Seed of every subsample.
    progress
        ``(done, total, note)`` while features are computed.
    """
    tree = project.tree()
    sets: dict[str, list[Sample]] = {"tree": project.samples()}
    if not sets["tree"]:
        raise TreeSynthError("the project has no samples yet: synthesize some first (treesynth synth DIR)")
    baseline_missing = False
    if include_baseline:
        flat = project.samples(sample_set=BASELINE_SET)
        if flat:
            sets["baseline"] = flat
        else:
            baseline_missing = True
    if n is not None and n < 2:
        raise TreeSynthError("score at n >= 2 samples per set")

    def stage(note: str) -> Progress:
        def report(done: int, total: int, inner: str = "") -> None:
            if progress:
                progress(done, total, note)

        return report

    embeddings = {
        name: ensure_features(project, samples, embedder, progress=stage(f"embedding {name} samples"))
        for name, samples in sets.items()
    }
    common, chosen = diversity.subsample_equal_n({name: len(s) for name, s in sets.items()}, n, seed)
    scores: dict[str, dict[str, Any]] = {}
    for name, samples in sets.items():
        picked = chosen[name]
        scores[name] = _subset_scores(
            project,
            samples,
            [samples[i] for i in picked],
            embeddings[name][picked],
            gradient_featurizer,
            stage(f"gradients of {name} samples"),
        )
    gain = None
    if "baseline" in scores:
        keys = ["vendi", "g_vendi", "mean_cosine", "distinct_1", "distinct_2"]
        gain = {
            k: _num(scores["tree"][k] - scores["baseline"][k])
            for k in keys
            if scores["tree"].get(k) is not None and scores["baseline"].get(k) is not None
        }
    sizes = ", ".join(f"{name} {len(s)}" for name, s in sets.items())
    notes = [
        f"Scores grow with n: every set is scored at equal n = {common} (seeded subsample, seed {seed}; "
        f"sizes: {sizes}).",
        "mean_cosine is TreeSynth's diversity figure: lower is more diverse; Vendi, G-Vendi and distinct-n: "
        "higher is more diverse.",
    ]
    return {
        "n": common,
        "seed": seed,
        "embedder": embedder.name,
        "gradients": gradient_featurizer.name if gradient_featurizer is not None else None,
        "sets": scores,
        "gain": gain,
        "leaves": leaf_table(tree, sets["tree"], embeddings["tree"], seed=seed),
        "subtrees": subtree_table(tree, sets["tree"], embeddings["tree"], seed=seed),
        "curve": {name: curve(embeddings[name], seed=seed) for name in sets},
        "notes": notes,
        "baseline_missing": baseline_missing,
    }


def compare_sets(
    project: CoverageStore,
    sets: Mapping[str, Sequence[Sample]],
    *,
    embedder: Featurizer,
    gradient_featurizer: Featurizer | None = None,
    n: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Scores of several sample sets (e.g. a dataset before and after rebalancing) at equal n.

    Returns ``{"n", "seed", "sets": {name: scores}, "notes"}`` with the same figures as
    :func:`coverage_report` (Vendi, mean cosine, distinct-n; G-Vendi with a gradient featurizer).
    """
    chosen_sets = {name: list(samples) for name, samples in sets.items() if samples}
    if not chosen_sets:
        raise TreeSynthError("nothing to score: the sample sets are empty")
    common, chosen = diversity.subsample_equal_n({name: len(s) for name, s in chosen_sets.items()}, n, seed)
    if common < 2:
        raise TreeSynthError("every set needs at least 2 samples to be compared")
    scores: dict[str, dict[str, Any]] = {}
    for name, samples in chosen_sets.items():
        subset = [samples[i] for i in chosen[name]]

        def report(done: int, total: int, inner: str = "", name: str = name) -> None:
            if progress:
                progress(done, total, f"features of {name}")

        X = ensure_features(project, subset, embedder, progress=report)
        scores[name] = _subset_scores(project, samples, subset, X, gradient_featurizer, report)
    sizes = ", ".join(f"{name} {len(s)}" for name, s in chosen_sets.items())
    return {
        "n": common,
        "seed": seed,
        "sets": scores,
        "notes": [f"Every set is scored at equal n = {common} (seeded subsample, seed {seed}; sizes: {sizes})."],
    }
