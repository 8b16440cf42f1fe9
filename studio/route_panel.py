"""The Data page's routing result: the counts a person checks first (in a leaf, none fits, errors),
a warning when one leaf swallows the set, the agreement of the two routers, samples per leaf as
labelled horizontal bars, and examples of what was routed into each leaf.

Read from the store through :func:`~treesynth_core.data.routing.summary`, never recomputed. Every
text from a dataset, a tree or an LLM reaches the page escaped: :func:`md` in markdown, ``st.text``
for samples, tables through ``st.dataframe`` and ``html.escape`` in plotly labels and hover text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import streamlit as st

from studio.data_panel import ROUTER_NAMES, last_job, set_counts
from studio.widgets import md
from treesynth_core.data.routing import (
    ROUTERS,
    agreement,
    current_routes,
    path_label,
    short_path,
    summary,
    tree_digest,
)
from treesynth_core.llm import timing
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.store.samples import UNROUTED

#: Examples shown per leaf, and how much of each.
EXAMPLES_PER_LEAF = 5
EXAMPLE_CHARS = 600
BAR_PX = 22  # height of one leaf's bar


@st.cache_data(show_spinner=False, max_entries=32)
def _route_view(
    _project: Project, key: tuple[Any, ...], sample_set: str, preferred: str | None, total: int
) -> dict[str, Any] | None:
    tree = _project.tree()
    routes = {router: current_routes(_project, router, sample_set=sample_set) for router in ROUTERS}
    order = [preferred, *[r for r in ROUTERS if r != preferred]] if preferred in ROUTERS else list(ROUTERS)
    router = next((r for r in order if r and routes[r]), None)
    if router is None:
        return None
    report = summary(tree, routes[router].values(), total=total)
    other = next(r for r in ROUTERS if r != router)
    report["router"] = router
    report["agreement"] = {**agreement(routes[router], routes[other]), "other": other} if routes[other] else None
    report["leaves"] = [
        {
            "leaf_id": leaf.id,
            "path": path_label(tree, leaf.id),
            "short": short_path(tree, leaf.id),
            "count": report["per_leaf"].get(leaf.id, 0),
        }
        for leaf in tree.leaves()
    ]
    return report


def llm_route_time(project: Project, settings: BackendSettings, samples: int) -> str:
    """The LLM calls and time of routing ``samples`` samples: one call a level at most (a sample
    that fits no value stops early; cached replies are free)."""
    calls = samples * max(1, project.tree().levels())
    took = timing.estimate_time(project, settings, timing.ROUTE_PURPOSES, calls)
    return timing.calls_text(calls, took, at_most=True)


def route_view(project: Project, sample_set: str) -> dict[str, Any] | None:
    """:func:`routing.summary` of the routes on the current tree, of the router that placed the samples
    (the latest route job's), with the agreement of the two routers where both routed; None before
    any routing. Read from the store, never recomputed; cached until a route job or the tree changes."""
    tree = project.tree()
    total = project.sample_sets().get(sample_set, 0)
    last = last_job(project, "route", sample_set)
    stamp = (last.id, last.status, last.finished, last.done) if last else None
    preferred = str(last.params.get("router")) if last else None
    counts = set_counts(project, sample_set)
    return _route_view(project, (str(project.path), tree_digest(tree), stamp, counts), sample_set, preferred, total)


def route_summary(project: Project, sample_set: str, report: dict[str, Any]) -> None:
    """Metric cards, a crowded-leaf warning, where "none fits" stopped, the agreement, samples per
    leaf and examples per leaf."""
    cols = st.columns(5)
    routed = max(1, report["routed"])
    cards = [
        ("In a leaf", report["leaf"], "Routed all the way down to a leaf."),
        (
            "None fits",
            report["none_fits"],
            f"{report['none_fits'] / routed:.0%} of the routed samples stopped at a node where no value fits: "
            "kept, unrouted, counted below.",
        ),
        (
            "Errors",
            report["errors"],
            f"{report['errors'] / routed:.0%} of the routed samples: the LLM could not classify them even after "
            "re-asking. Kept, unrouted.",
        ),
        ("Not routed", report["not_routed"], "Samples without a route on the current tree yet (new, or stopped)."),
        ("Routed", report["routed"], f"Samples the {report['router']} router has placed, of {report['total']:,}."),
    ]
    for col, (label, value, hint) in zip(cols, cards, strict=True):
        col.metric(label, value, help=hint, border=True)
    st.caption(md(f"Placed by the {report['router']} router, on the current tree."))
    placed = max(1, report["leaf"])
    for row in report.get("crowded") or []:
        st.warning(
            f"{row['count']} of {report['leaf']} samples in leaves ({row['count'] / placed:.0%}) are in one "
            f"leaf: {md(row['path'])}. A router that piles a set into one leaf is more likely wrong than the "
            "data: look at the examples below, or route a sample with the other router to compare.",
            icon=":material/warning:",
        )
    _agreement(report.get("agreement"))
    if report["none_fits_at"]:
        st.markdown("**Where \u201cnone fits\u201d stopped**")
        st.dataframe(
            {
                "stopped at": [row["path"] for row in report["none_fits_at"]],
                "samples": [row["count"] for row in report["none_fits_at"]],
            },
            key="data.route.none",
            hide_index=True,
            width="stretch",
        )
    leaves = report["leaves"]
    empty = sum(1 for row in leaves if row["count"] == 0)
    st.caption(f"{len(leaves)} leaves, {empty} of them empty.")
    st.plotly_chart(leaf_figure(leaves), key="data.route.leaves")
    leaf_examples(project, sample_set, report)


def _agreement(agree: dict[str, Any] | None) -> None:
    if not agree or agree["rate"] is None:
        return
    first = agree["first_level_rate"]
    other = ROUTER_NAMES.get(agree["other"], agree["other"])
    st.metric(
        f"Agreement with the {other} router",
        f"{agree['rate']:.0%}",
        help=f"Same leaf (or the same 'none fits' node) on the {agree['n']} samples both routers placed; "
        f"same first level: {first:.0%}.",
        border=True,
    )
    did = agree.get("other_status") or {}
    st.caption(
        md(
            f"On those {agree['n']} samples the {other} router put {did.get('leaf', 0)} in a leaf, found "
            f"that no value fits for {did.get('none', 0)} and could not classify {did.get('error', 0)}."
            + (
                " A small model that answers 'none of these' to everything shows up here: route with the "
                "embedding router then."
                if did.get("none", 0) == agree["n"]
                else ""
            )
        )
    )


def leaf_figure(leaves: Sequence[dict[str, Any]], title: str = "Samples per leaf") -> Any:
    """Samples per leaf as horizontal bars, fullest on top, each labelled with its (shortened) path;
    the whole path on hover. Labels and hover text are escaped."""
    import plotly.graph_objects as go

    rows = sorted(leaves, key=lambda row: -row["count"])
    fig = go.Figure(
        go.Bar(
            y=list(range(len(rows))),
            x=[row["count"] for row in rows],
            orientation="h",
            marker_color="#1f77b4",
            customdata=[html.escape(row["path"], quote=False) for row in rows],
            hovertemplate="%{customdata}<br>%{x} samples<extra></extra>",
        )
    )
    leaf_axis(fig, title, [str(row["short"]) for row in rows])
    fig.update_xaxes(title="samples")
    return fig


def leaf_axis(fig: Any, title: str, labels: Sequence[str], *, per_bar: float = 1) -> None:
    """One escaped label per leaf (by position, so two leaves with the same short label stay apart),
    first on top, and a height that fits them all (``per_bar`` bars per leaf)."""
    fig.update_yaxes(
        tickmode="array",
        tickvals=list(range(len(labels))),
        ticktext=[html.escape(label, quote=False) for label in labels],
        autorange="reversed",
        title=None,
    )
    legend = {"orientation": "h", "y": 1.0, "x": 1, "xanchor": "right", "yanchor": "bottom"}
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=max(240, int(80 + BAR_PX * per_bar * len(labels))),
        legend=legend,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )


def leaf_examples(project: Project, sample_set: str, report: dict[str, Any]) -> None:
    """An expander with the first samples routed into a chosen leaf (fullest leaf first), or in no leaf."""
    filled = sorted((row for row in report["leaves"] if row["count"]), key=lambda row: -row["count"])
    unplaced = report["total"] - report["leaf"]
    # leaf id -> its path: the counts are in the caption below, not the options (a browser sends the
    # choice back as its text, so a choice whose count changed on a new routing would be reset)
    path_of = {row["leaf_id"]: row["path"] for row in filled}
    if unplaced:
        path_of[UNROUTED] = "(in no leaf: none fits, errors, not routed)"
    if not path_of:
        return
    with st.expander("Examples per leaf: what was routed where", icon=":material/list_alt:"):
        chosen = st.selectbox("Leaf", list(path_of), key="data.route.examples", format_func=path_of.__getitem__)
        samples = project.samples(sample_set=sample_set, leaf_id=chosen)
        st.caption(f"The first {min(EXAMPLES_PER_LEAF, len(samples))} of {len(samples)} samples there.")
        for sample in samples[:EXAMPLES_PER_LEAF]:
            text = sample.instruction
            with st.container(border=True):
                st.text(text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "\u2026")
