"""Read a project into a :class:`~.model.Report`: the tree with sample counts, the score card from
:func:`~treesynth_core.coverage.report.coverage_report`, the last coverage map laid out, a few
samples per leaf, the imported and rebalanced sets, and the dataset card an export would write."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..coverage.features.embeddings import Featurizer
from ..coverage.map_density import drawn_indices
from ..coverage.map_points import BASELINE_LABEL, MapPoints
from ..coverage.maps import latest_map_points
from ..data.export import dataset_card, live_samples
from ..errors import TreeSynthError
from ..progress import Progress
from ..store import Project
from ..store.samples import BASELINE_SET, TREE_SET, UNROUTED, Sample
from ..tree.model import Tree
from .model import (
    SAMPLES_PER_LEAF,
    CurvePoint,
    LeafSamples,
    MapDot,
    Report,
    ReportNode,
    SampleText,
    ScoreRow,
    Scores,
    SetSummary,
)

#: A sample's text is cut to this many characters in the report.
TEXT_MAX = 600
#: The map shows at most this many points (a seeded subsample of a bigger map).
MAP_MAX = 3_000
#: The score card's figures: (name, key in a set's scores, higher is better).
SCORE_FIGURES: tuple[tuple[str, str, bool], ...] = (
    ("Vendi (q=1)", "vendi", True),
    ("G-Vendi", "g_vendi", True),
    ("Mean cosine", "mean_cosine", False),
    ("Distinct-1", "distinct_1", True),
    ("Distinct-2", "distinct_2", True),
)


def collect_report(
    project: Project,
    *,
    embedder: Featurizer | None = None,
    samples_per_leaf: int = SAMPLES_PER_LEAF,
    seed: int = 0,
    name: str | None = None,
    today: dt.date | None = None,
    progress: Progress | None = None,
) -> Report:
    """Everything the report shows. Without ``embedder`` there is no score card and no map; with one,
    the features it lacks are computed (and stored), unless it only reads stored features and raises a
    :class:`~treesynth_core.errors.TreeSynthError` for missing ones: then the report says why."""
    if samples_per_leaf < 0:
        raise TreeSynthError("--samples-per-leaf must be 0 or more")
    tree = project.tree()
    samples = project.samples()
    baseline = project.samples(sample_set=BASELINE_SET)
    counts = Counter(s.leaf_id for s in samples)
    scores, scores_note = _scores(project, embedder, seed, progress) if samples else (None, "No samples yet.")
    if embedder is None:
        dots: tuple[MapDot, ...] = ()
        map_note = "No map: the report was made without embeddings."
    else:
        dots, map_note = _map(project, embedder.name, seed)
    return Report(
        name=name or project.path.name,
        task=tree.task,
        style=tree.style,
        created=(today or dt.date.today()).isoformat(),
        nodes=tree_nodes(tree, counts),
        samples=len(samples),
        baseline_samples=len(baseline),
        scores=scores,
        scores_note=scores_note,
        map_dots=dots,
        map_note=map_note,
        leaves=leaf_samples(tree, samples, samples_per_leaf),
        sets=tuple(set_summaries(project, tree)),
        card=_card(project, tree, samples, today),
    )


def tree_nodes(tree: Tree, counts: Counter[str]) -> tuple[ReportNode, ...]:
    """Every node, breadth-first, with the samples in its subtree."""
    order = [tree.root]
    for node in order:
        order.extend(tree.children(node.id))
    totals: Counter[str] = Counter()
    for node in reversed(order):
        totals[node.id] += counts.get(node.id, 0)
        if node.parent_id is not None:
            totals[node.parent_id] += totals[node.id]
    return tuple(
        ReportNode(
            id=node.id,
            parent_id=node.parent_id,
            depth=node.depth,
            criterion=node.criterion,
            label=tree.task if node.is_root else node.label,
            status="root" if node.is_root else ("pruned" if not tree.is_active(node.id) else node.status),
            samples=totals[node.id],
            is_leaf=not tree.children(node.id),
        )
        for node in order
    )


def _scores(
    project: Project, embedder: Featurizer | None, seed: int, progress: Progress | None
) -> tuple[Scores | None, str]:
    from ..coverage.report import coverage_report

    if embedder is None:
        return None, "No score card: the report was made without embeddings."
    try:
        rep = coverage_report(project, embedder=embedder, seed=seed, progress=progress)
    except TreeSynthError as exc:
        try:  # the flat baseline may lack features the tree's samples have (it grew since)
            rep = coverage_report(project, embedder=embedder, include_baseline=False, seed=seed, progress=progress)
        except TreeSynthError:
            return None, f"No score card: {exc}"
        return scores_of(rep), f"Scored without the flat baseline: {exc}"
    return scores_of(rep), ""


def scores_of(rep: dict[str, Any]) -> Scores:
    """The score card of a :func:`~treesynth_core.coverage.report.coverage_report`."""
    sets = rep["sets"]
    tree, flat = sets["tree"], sets.get("baseline", {})
    rows = tuple(
        ScoreRow(name, tree.get(key), flat.get(key), higher)
        for name, key, higher in SCORE_FIGURES
        if tree.get(key) is not None or flat.get(key) is not None
    )
    curves = {name: tuple(CurvePoint(int(p["n"]), p["vendi"]) for p in points) for name, points in rep["curve"].items()}
    return Scores(
        n=int(rep["n"]),
        embedder=str(rep["embedder"]),
        rows=rows,
        curves=curves,
        notes=tuple(rep["notes"]),
        has_baseline="baseline" in sets,
    )


def _map(project: Project, kind: str, seed: int) -> tuple[tuple[MapDot, ...], str]:
    points = latest_map_points(project, kind, seed=seed, sample_sets=(TREE_SET, BASELINE_SET))
    if not points:
        return (), "No map yet: lay one out with treesynth map DIR (or on the Coverage page)."
    shown = points
    note = f"{len(points):,} samples, UMAP of {kind}."
    if len(points) > MAP_MAX:
        shown = points.take(drawn_indices(len(points), seed, limit=MAP_MAX, above=MAP_MAX))
        note = f"{MAP_MAX:,} of {len(points):,} samples (seeded subsample), UMAP of {kind}."
    return map_dots(shown), note


def map_dots(points: MapPoints) -> tuple[MapDot, ...]:
    """One report dot per point: coloured by its subtree (the flat baseline apart), its path and text."""
    dots = []
    for x, y, code, text in zip(
        points.x.tolist(), points.y.tolist(), points.origin.tolist(), points.text(), strict=True
    ):
        origin = points.origins[code]
        label = origin.leaf_label
        group = label if label == BASELINE_LABEL else label.split(" > ")[0]
        dots.append(MapDot(x=x, y=y, group=group, text=f"{origin.path or label}: {_cut(text, 200)}"))
    return tuple(dots)


def leaf_samples(tree: Tree, samples: Sequence[Sample], k: int) -> tuple[LeafSamples, ...]:
    """Every active leaf with its count and its first ``k`` samples."""
    by_leaf: dict[str, list[Sample]] = {}
    for sample in samples:
        by_leaf.setdefault(sample.leaf_id, []).append(sample)
    rows = []
    for leaf in tree.leaves():
        mine = by_leaf.get(leaf.id, [])
        path = " > ".join(f"{step.criterion}: {step.value}" for step in tree.path(leaf.id)) or "(root)"
        shown = tuple(SampleText(_cut(s.instruction, TEXT_MAX), _cut(s.response or "", TEXT_MAX)) for s in mine[:k])
        rows.append(LeafSamples(leaf.id, path, len(mine), shown))
    return tuple(rows)


def set_summaries(project: Project, tree: Tree) -> list[SetSummary]:
    """The sample sets besides the tree's and the flat baseline (imported, rebalanced)."""
    out = []
    for name in project.sample_sets():
        if name in (TREE_SET, BASELINE_SET):
            continue
        rows = project.samples(sample_set=name)
        routed = [s for s in rows if s.leaf_id != UNROUTED and s.leaf_id in tree.nodes]
        origins = Counter(s.extra.get("provenance", "synthesized") for s in rows)
        out.append(
            SetSummary(
                name=name,
                total=len(rows),
                routed=len(routed),
                unrouted=len(rows) - len(routed),
                original=origins.get("original", 0),
                synthesized=origins.get("synthesized", 0),
                leaves=len({s.leaf_id for s in routed}),
            )
        )
    return out


def _card(project: Project, tree: Tree, samples: Sequence[Sample], today: dt.date | None) -> str:
    """The card a default export of the tree's samples writes (contaminated samples left out)."""
    flagged = {hit.sample_id for hit in project.contamination(TREE_SET)}
    kept = live_samples(tree, [s for s in samples if s.id not in flagged])
    excluded = len(samples) - len([s for s in samples if s.id not in flagged])
    checks = project.contamination_checks(TREE_SET)
    return dataset_card(tree, kept, fmt="an HTML report", today=today, checks=checks, excluded=excluded)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
