"""The rebalancing pieces of the Data page: the plan (each approved leaf's shortfall and its cost),
the before/after counts per leaf, where the balanced set's samples came from, and the diversity of
the source and balanced sets at equal n.

The ``balance`` job (:mod:`treesynth_core.jobs.background`) builds the set; this module reads the
store through :func:`~treesynth_core.data.balance.plan_balance` and
:func:`~treesynth_core.coverage.report.compare_sets` and renders what they return, text escaped as in
:mod:`studio.data_panel`.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import streamlit as st

from studio import data_panel, route_panel
from studio.widgets import md, model_name
from treesynth_core.coverage import SCORES
from treesynth_core.data.balance import shortfall_options
from treesynth_core.data.routing import path_label, short_path, tree_digest
from treesynth_core.generate.synth import plan_synthesis
from treesynth_core.jobs import background as jobs
from treesynth_core.llm import timing
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.tree.model import Tree


def _tree_stamp(tree: Tree) -> tuple[str, tuple[str, ...]]:
    """What a plan depends on in the tree: its routing digest and which leaves are approved."""
    return tree_digest(tree), tuple(leaf.id for leaf in tree.leaves() if tree.is_approved_path(leaf.id))


@st.cache_data(show_spinner=False, max_entries=32)
def _plan(
    _project: Project, key: tuple[Any, ...], source: str, per_leaf: int, seed: int, target: str
) -> dict[str, Any]:
    from treesynth_core.data.balance import plan_balance

    samples = _project.samples(sample_set=source)
    return plan_balance(
        _project.tree(), samples, per_leaf=per_leaf, seed=seed, source_set=source, target_set=target
    ).to_dict()


def balance_plan(project: Project, source: str, *, per_leaf: int, seed: int, target: str) -> dict[str, Any]:
    """:func:`balance.plan_balance` on the routed samples of ``source`` (cached while the routing and
    the tree's approvals are unchanged)."""
    key = (str(project.path), _tree_stamp(project.tree()), data_panel.set_counts(project, source))
    return _plan(project, key, source, int(per_leaf), int(seed), target)


def shortfall_cost(
    project: Project, plan: dict[str, Any], settings: BackendSettings, *, per_leaf: int, responses: bool
) -> str | None:
    """About how many LLM calls, and how long, synthesizing the plan's shortfall takes (None when
    nothing is to be synthesized): synthesis's own estimate of the rebalance's synthesis options."""
    targets = [row["leaf_id"] for row in plan["leaves"] if row["synthesize"]]
    if not targets:
        return None
    options = shortfall_options(per_leaf, targets, responses=responses)
    kept = {row["leaf_id"]: row["kept"] for row in plan["leaves"]}
    calls = plan_synthesis(project.tree(), kept, options, model=model_name(settings), settings=settings).calls
    took = timing.estimate_time(project, settings, timing.synth_purposes(responses), calls)
    return (
        f"Synthesizing the {plan['to_synthesize']:,} missing samples takes about {calls:,} LLM calls: "
        f"{took.text()}, on {settings.describe()}."
    )


def plan_view(plan: dict[str, Any], note: str | None = None) -> None:
    """The plan's cards, ``note`` (e.g. what synthesizing the shortfall costs), then its per-leaf table."""
    cols = st.columns(5)
    cards = [
        ("Kept", plan["kept"], "Originals kept (a seeded random per-leaf target of each crowded leaf)."),
        ("Dropped", plan["dropped"], "Originals left out of crowded leaves (the source set keeps them)."),
        ("To synthesize", plan["to_synthesize"], "Samples the LLM writes in short, approved leaves."),
        (
            "Unrouted",
            plan["unrouted"],
            "Samples no router placed in a leaf ('none fits', errors, new): they are left out of the new set.",
        ),
        (
            "Not approved",
            len(plan["skipped_leaves"]),
            "Short leaves with nothing synthesized: approve them on the Tree page to fill them.",
        ),
    ]
    for col, (label, value, hint) in zip(cols, cards, strict=True):
        col.metric(label, value, help=hint, border=True)
    if note:
        st.caption(f":material/schedule: {md(note)}")
    leaves = plan["leaves"]
    st.dataframe(
        {
            "leaf": [row["path"] for row in leaves],
            "before": [row["before"] for row in leaves],
            "kept": [row["kept"] for row in leaves],
            "dropped": [row["dropped"] for row in leaves],
            "synthesize": [row["synthesize"] for row in leaves],
            "approved": [row["approved"] for row in leaves],
        },
        key="data.balance.plan",
        hide_index=True,
        width="stretch",
    )


def before_after(project: Project, source: str, target: str) -> list[dict[str, Any]]:
    """Samples per leaf in ``source`` (before) and ``target`` (after)."""
    tree = project.tree()
    before, after = project.sample_counts(sample_set=source), project.sample_counts(sample_set=target)
    return [
        {
            "leaf": path_label(tree, leaf.id),
            "short": short_path(tree, leaf.id),
            "before": before.get(leaf.id, 0),
            "after": after.get(leaf.id, 0),
        }
        for leaf in tree.leaves()
    ]


def still_missing(project: Project, target: str, per_leaf: int) -> int:
    """Samples a rerun of rebalancing into ``target`` would still add: the shortfall of approved leaves."""
    tree = project.tree()
    have = project.sample_counts(sample_set=target)
    return sum(max(0, per_leaf - have.get(leaf.id, 0)) for leaf in tree.leaves(approved_only=True))


@st.cache_data(show_spinner=False, max_entries=32)
def _provenance(_project: Project, key: tuple[Any, ...], target: str) -> dict[str, Any]:
    samples = _project.samples(sample_set=target)
    kinds = Counter(str(s.extra.get("provenance", "unknown")) for s in samples)
    sources = Counter(str(s.extra["source_set"]) for s in samples if s.extra.get("source_set"))
    return {"provenance": dict(kinds), "sources": [name for name, _ in sources.most_common()]}


def provenance(project: Project, target: str) -> dict[str, Any]:
    """``{"provenance": {"original": n, "synthesized": m}, "sources": [source sets of the originals]}``."""
    return _provenance(project, (str(project.path), data_panel.set_counts(project, target)), target)


def before_after_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """Before and after per leaf, grouped horizontal bars labelled with the leaf's shortened path,
    fullest leaf (before) on top; the whole path on hover."""
    import plotly.graph_objects as go

    rows = sorted(rows, key=lambda row: (-row["before"], -row["after"]))
    paths = [html.escape(row["leaf"], quote=False) for row in rows]
    fig = go.Figure()
    for name, colour in (("before", "#9e9e9e"), ("after", "#2ca02c")):
        fig.add_trace(
            go.Bar(
                y=list(range(len(rows))),
                x=[row[name] for row in rows],
                orientation="h",
                name=name,
                marker_color=colour,
                customdata=paths,
                hovertemplate=f"%{{customdata}}<br>{name}: %{{x}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    route_panel.leaf_axis(fig, "Samples per leaf, before and after", [str(row["short"]) for row in rows], per_bar=1.5)
    fig.update_xaxes(title="samples")
    return fig


@st.cache_data(show_spinner=False, max_entries=16)
def _scores(_project: Project, key: tuple[Any, ...], source: str, target: str, seed: int) -> dict[str, Any]:
    from studio.coverage_panel import FeaturesMissing, StoredFeatures, stored_kind
    from treesynth_core.coverage.report import compare_sets

    sets = {"before": _project.samples(sample_set=source), "after": _project.samples(sample_set=target)}
    embedder = jobs.featurizer("embeddings")
    grads = stored_kind(_project, "gradients")
    if grads:  # G-Vendi only from gradient features already stored: never computed here (slow)
        try:
            return compare_sets(_project, sets, embedder=embedder, gradient_featurizer=StoredFeatures(grads), seed=seed)
        except FeaturesMissing:
            pass
    return compare_sets(_project, sets, embedder=embedder, seed=seed)


def balance_scores(project: Project, source: str, target: str, *, seed: int = 0) -> dict[str, Any]:
    """:func:`coverage.compare_sets` of ``source`` (before) and ``target`` (after) at equal n with the
    embedded embedder (the features the balance job stored are reused); cached while both sets'
    per-leaf counts are unchanged."""
    key = (str(project.path), data_panel.set_counts(project, source), data_panel.set_counts(project, target))
    return _scores(project, key, source, target, int(seed))


def scores_view(scores: dict[str, Any]) -> None:
    before, after = scores["sets"].get("before", {}), scores["sets"].get("after", {})
    keys = SCORES
    cards = [(label, key) for label, key in keys[:3] if after.get(key) is not None or before.get(key) is not None]
    cols = st.columns(len(cards) + 1)
    for col, (label, key) in zip(cols, cards, strict=False):
        now, then = after.get(key), before.get(key)
        delta = None if now is None or then is None else f"{now - then:+.2f} vs before"
        col.metric(
            f"{label} after",
            _fmt(now),
            delta=delta,
            help=f"Before: {_fmt(then)}.",
            border=True,
            delta_color="inverse" if key == "mean_cosine" else "normal",
        )
    cols[-1].metric("n", scores["n"], help="Both sets are scored on seeded subsamples of this size.", border=True)
    st.dataframe(
        {
            "score": [label for label, _ in keys],
            "before": [_fmt(before.get(k), 3) for _, k in keys],
            "after": [_fmt(after.get(k), 3) for _, k in keys],
        },
        key="data.balance.scores",
        hide_index=True,
    )
    for note in scores.get("notes", []):
        st.caption(md(note))


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


# -- scaling (SynthLLM) ---------------------------------------------------------------------------

#: SynthLLM (Qin et al., arXiv 2503.19551) Table 1: MATH accuracy (%) of Llama-3.1-8B against billions of
#: synthetic tokens; 4.5B is measured, 10B..4T are the paper's extrapolations (tests/fixtures/synthllm_table1.csv).
EXAMPLE_POINTS: tuple[tuple[float, float], ...] = (
    (4.5, 71.3),
    (10.0, 73.2),
    (50.0, 78.6),
    (250.0, 81.4),
    (300.0, 81.6),
    (1000.0, 82.6),
    (4000.0, 83.2),
)
EXAMPLE_NOTE = (
    "SynthLLM (Qin et al., arXiv 2503.19551) Table 1: MATH accuracy (%) of Llama-3.1-8B fine-tuned on D billion "
    "synthetic tokens; 4.5B is measured, 10B to 4T are the paper's own extrapolations."
)
