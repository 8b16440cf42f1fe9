"""The Fill gaps tab of the Coverage page: the choices a run starts with (where its few-shot examples
come from, majority-vote verification), and what the last run did, read from the project
(:func:`~treesynth_core.generate.gap_report.last_report`): the per-round table, the cluster-size
histogram, the Vendi-vs-n curve against the random-acceptance baseline, and the agreement of the vote
per leaf (:func:`~treesynth_core.generate.agreement.leaf_agreement`, synthesis runs with
verification included).

Leaf paths reach plotly labels and hover text escaped (``html.escape``), and markdown through
:func:`studio.widgets.md`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from studio.graph import path_text
from studio.widgets import md
from treesynth_core.generate.agreement import LeafAgreement, leaf_agreement, total_agreement
from treesynth_core.generate.gap_options import ANSWER_EXTRACTORS, SHOTS_FROM, GapOptions
from treesynth_core.generate.gap_report import GapReport, last_report
from treesynth_core.generate.verify import DEFAULT_DRAWS
from treesynth_core.store import Project
from treesynth_core.tree import model as T

SHOTS_LABELS = {
    "sparse": "The sparse clusters",
    "levels": "The pool, weighted by level (released code)",
    "smallest": "The smallest 10% of clusters (paper's text)",
}
#: Verification choices: off, the paper's 3 draws, or 5.
DRAW_CHOICES = (0, DEFAULT_DRAWS, 5)
ANSWER_LABELS = {"last-number": "The last number", "boxed": "The last \\boxed{}"}
_LAYOUT = {"template": "plotly_white", "height": 320, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}}


def start_options(*, disabled: bool) -> dict[str, Any]:
    """The few-shot source and the verification of a new run, as job params (defaults left out)."""
    c1, c2, c3 = st.columns(3)
    shots = c1.selectbox(
        "Few-shot examples from",
        list(SHOTS_FROM),
        format_func=lambda s: SHOTS_LABELS[s],
        key="coverage.shots_from",
        disabled=disabled,
        help="Where each call's examples come from: the sparse clusters (this tool's default), the pool weighted "
        "by each sample's level (Prismatic Synthesis's released code), or the smallest tenth of the clusters "
        "(the paper's text).",
    )
    draws, answer = verify_selectors(
        c2,
        c3,
        prefix="coverage",
        disabled=disabled,
        draws_help="Answer each candidate k times (temperature 0.75) and keep it only when most answers agree on "
        "the final answer (numbers compared numerically); the kept answer is the majority's.",
    )
    params: dict[str, Any] = {}
    if shots != GapOptions.shots_from:
        params["shots_from"] = shots
    if draws:
        params |= {"verify": draws, "answer": answer}
    return params


def verify_selectors(
    draws_col: DeltaGenerator, answer_col: DeltaGenerator, *, prefix: str, disabled: bool, draws_help: str
) -> tuple[int, str]:
    """Majority-vote verification's two selectors (keys ``PREFIX.verify`` and ``PREFIX.answer``): the
    draws (off, or k draws) and how the final answer is read, which is off while the draws are."""
    draws = draws_col.selectbox(
        "Verify answers",
        list(DRAW_CHOICES),
        format_func=lambda k: "off" if k == 0 else f"{k} draws, majority vote",
        key=f"{prefix}.verify",
        disabled=disabled,
        help=draws_help,
    )
    answer = answer_col.selectbox(
        "Final answer",
        list(ANSWER_EXTRACTORS),
        format_func=lambda a: ANSWER_LABELS[a],
        key=f"{prefix}.answer",
        disabled=disabled or not draws,
        help="How the final answer is read from each draw.",
    )
    return int(draws or 0), str(answer)


def last_run(project: Project) -> None:
    """What the last gap-filling run did, and the vote's agreement per leaf (when any run verified)."""
    report = last_report(project)
    tree = project.tree()
    if report is not None:
        _report_view(report, tree)
    agreement = leaf_agreement(project)
    if agreement:
        agreement_view(agreement, tree)


def _report_view(report: GapReport, tree: T.Tree) -> None:
    st.subheader("Last gap-filling run")
    vote = ""
    if report.verify:
        vote = (
            f"; verified by {report.verify} draws ({report.answer}): {report.verified} agreed, "
            f"{report.rejected} rejected"
        )
    shots = SHOTS_LABELS.get(report.shots_from, report.shots_from).lower() if report.shots_from else ""
    st.caption(
        md(
            f"{report.accepted} of {report.candidates} candidates kept ({report.acceptance_rate:.0%}) in "
            f"{report.space}{vote}. Diversity {report.before:.3f} -> {report.after:.3f} at n = {report.n}"
            + (f"; few-shot examples from {shots}." if shots else ".")
        )
    )
    st.dataframe(round_table(report), key="coverage.gap_rounds", hide_index=True)
    left, right = st.columns(2)
    with left:
        st.plotly_chart(histogram_figure(report), key="coverage.gap_histogram")
    with right:
        st.plotly_chart(curve_figure(report), key="coverage.gap_curve")
    rejected = report.rejected_by_leaf()
    if report.verify and rejected:
        rows = {
            "leaf": [path_text(tree, leaf) if leaf in tree.nodes else leaf for leaf in rejected],
            **{
                f"round {r.round}": [r.rejected_by_leaf.get(leaf, 0) for leaf in rejected]
                for r in report.per_round
                if r.rejected_by_leaf
            },
            "rejected": list(rejected.values()),
        }
        st.caption("Candidates rejected by the vote, per leaf and round:")
        st.dataframe(rows, key="coverage.gap_rejections", hide_index=True)


def round_table(report: GapReport) -> dict[str, list[Any]]:
    """The per-round table: generated, verified, rejected, kept, acceptance, sparse clusters, and the
    pool's Vendi against the random-acceptance baseline after the round."""
    rows = report.per_round
    points = [report.point(r.round) for r in rows]
    table: dict[str, list[Any]] = {"round": [r.round for r in rows], "generated": [r.candidates for r in rows]}
    if report.verify:
        table |= {"verified": [r.verified for r in rows], "rejected": [r.rejected for r in rows]}
    table |= {
        "kept": [r.kept for r in rows],
        "acceptance": [f"{r.acceptance_rate:.0%}" for r in rows],
        "sparse / clusters": [f"{r.sparse} / {r.clusters}" for r in rows],
        "n": [p.n if p else None for p in points],
        "Vendi": [round(p.kept, 3) if p else None for p in points],
        "Vendi, random acceptance": [round(p.random, 3) if p else None for p in points],
    }
    return table


def histogram_figure(report: GapReport) -> Any:
    """Clusters by size, one bar series per round."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in report.per_round:
        fig.add_trace(
            go.Bar(
                x=[size for size, _ in r.cluster_sizes],
                y=[n for _, n in r.cluster_sizes],
                name=f"round {r.round}",
                hovertemplate=f"round {r.round}<br>size %{{x}}: %{{y}} clusters<extra></extra>",
            )
        )
    fig.update_layout(
        title="Cluster sizes of the pool", xaxis_title="samples in the cluster", yaxis_title="clusters", **_LAYOUT
    )
    return fig


def curve_figure(report: GapReport) -> Any:
    """The pool's Vendi against n, as kept and with as many candidates kept at random."""
    import plotly.graph_objects as go

    n = [p.n for p in report.curve]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=n, y=[p.kept for p in report.curve], mode="lines+markers", name="kept (sparse)"))
    fig.add_trace(
        go.Scatter(
            x=n,
            y=[p.random for p in report.curve],
            mode="lines+markers",
            name="random acceptance",
            line={"dash": "dash"},
        )
    )
    fig.update_layout(
        title=f"Vendi against n ({html.escape(report.space)})", xaxis_title="n", yaxis_title="Vendi", **_LAYOUT
    )
    return fig


def agreement_view(agreement: Mapping[str, LeafAgreement], tree: T.Tree) -> None:
    """The share of votes that agreed, per leaf in the tree (synthesis and gap filling together)."""
    shown = {leaf: a for leaf, a in agreement.items() if leaf in tree.nodes and a.votes}
    if not shown:
        return
    total = total_agreement(shown)
    st.subheader("Verification agreement per leaf")
    st.caption(
        f"Majority-vote verification (synthesis and gap filling): {total.verified} of {total.votes} questions "
        f"agreed ({total.rate:.0%})."
    )
    st.plotly_chart(agreement_figure(shown, tree), key="coverage.agreement")


def agreement_figure(agreement: Mapping[str, LeafAgreement], tree: T.Tree) -> Any:
    """Agreement rate per leaf, lowest first, labelled with the leaf's path (escaped) and its votes."""
    import plotly.graph_objects as go

    rows = sorted(agreement.items(), key=lambda item: (item[1].rate, -item[1].votes))
    labels = [html.escape(path_text(tree, leaf), quote=False) for leaf, _ in rows]
    fig = go.Figure(
        go.Bar(
            x=[a.rate for _, a in rows],
            y=labels,
            orientation="h",
            text=[f"{a.rate:.0%} of {a.votes}" for _, a in rows],
            textposition="auto",
            customdata=[[a.verified, a.rejected] for _, a in rows],
            hovertemplate="%{y}<br>agreed %{customdata[0]}, rejected %{customdata[1]}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Share of questions whose draws agreed",
        xaxis={"title": "agreement rate", "range": [0, 1], "tickformat": ".0%"},
        yaxis={"title": "leaf", "autorange": "reversed"},
        **{**_LAYOUT, "height": max(240, 40 + 24 * len(rows))},
    )
    return fig
