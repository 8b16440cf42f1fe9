"""Pieces of the Coverage page: what is already computed, score cards, the per-leaf table, the map
with its selection, the baseline comparison and the coverage jobs' progress.

The page never computes features or layouts itself: a ``features`` job (see :mod:`treesynth_core.jobs.background`)
stores them, and everything here reads the store. :class:`StoredFeatures` is the featurizer the
page hands to the core: it answers from the store and refuses to compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

from studio import job_view
from studio.widgets import PAGE_COVERAGE, md
from treesynth_core.coverage import SCORES
from treesynth_core.coverage.map_density import drawn_indices
from treesynth_core.coverage.map_points import MapPoints
from treesynth_core.coverage.maps import DENSITY_ABOVE, DRAWN_POINTS, WEBGL_ABOVE, figure, latest_map_points, map_bytes
from treesynth_core.errors import TreeSynthError
from treesynth_core.generate.baseline import BaselineOptions, default_extra_calls
from treesynth_core.generate.gap_options import GapOptions
from treesynth_core.jobs import background as jobs
from treesynth_core.llm import timing
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.store.samples import BASELINE_SET, TREE_SET, Sample

SPACE_LABELS = {"embeddings": "Embedding space", "gradients": "Gradient space"}
#: The Fill gaps choice: gradient space first (the paper's), embeddings the fast one.
GAP_SPACES = {"gradients": "Gradient space (as the paper)", "embeddings": "Embedding space (fast)"}
JOB_LABELS = {
    "features": "Computing features and the map",
    "baseline": "Making the flat baseline",
    "fill-gaps": "Filling gaps",
}
#: What each coverage job counts, for its progress line.
JOB_UNITS = {"baseline": "samples", "features": "samples"}  # fill-gaps' notes say what they count
MAP_KEY = "coverage.map"
#: The page's sections: a keyed control, so the open one stays when a job ends (st.tabs resets).
SECTIONS = {"map": "Map", "leaves": "Per leaf", "baseline": "Tree vs flat baseline", "gaps": "Fill gaps"}
SECTION_KEY = "coverage.section"
#: The sample sets on the Coverage map (what a features job lays out).
MAP_SETS = (TREE_SET, BASELINE_SET)


class FeaturesMissing(TreeSynthError):
    """Some samples have no stored features of this kind (new samples since the last features job)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class StoredFeatures:
    """A featurizer that only reads the store: ``ensure_features`` with it never computes."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def dim(self) -> int:  # pragma: no cover - never asked while every vector is stored
        return 0

    def features(self, samples: Sequence[Sample], **_: Any) -> np.ndarray:
        raise FeaturesMissing(f"{len(samples)} samples have no {self.name} features yet: compute them", self.name)


def gradient_settings_form(project: Project, *, disabled: bool) -> Any:
    """The gradient proxy and token cut, saved in the project (what every gradient job and the CLI's
    ``--gradients`` commands use); returns the saved settings."""
    from pydantic import ValidationError

    from treesynth_core.coverage.features.proxy import GradientSettings, gradient_settings, save_gradient_settings

    saved = gradient_settings(project, check=False)
    with st.expander(md(f"G-Vendi: {saved.describe()}"), icon=":material/tune:"):
        left, right = st.columns([3, 1])
        proxy = left.text_input(
            "Proxy model",
            value=saved.proxy or "",
            key="coverage.proxy",
            placeholder="empty: the embedded SmolLM2-135M-Instruct",
            help="A local causal-LM checkpoint folder or a .gguf file; nothing is downloaded. The paper uses "
            "Qwen2.5-0.5B-Instruct. Each proxy's features are stored apart.",
        )
        cut = right.number_input(
            "Token cut",
            min_value=0,
            value=saved.max_tokens,
            step=64,
            key="coverage.grad_max_tokens",
            help="Each sample is cut to this many tokens (0: no cut, as the paper). 512 keeps most of a "
            "chain-of-thought response; 128 is about 5x faster on a CPU but sees ~10% of it.",
        )
        if st.button("Save", key="coverage.grad_save", icon=":material/save:", disabled=disabled):
            try:
                chosen = GradientSettings(proxy=proxy.strip() or None, max_tokens=int(cut))
                save_gradient_settings(project, chosen)
            except (TreeSynthError, ValidationError) as exc:
                st.error(md(str(exc).splitlines()[0]), icon=":material/error:")
            else:
                st.success(md(f"Saved: {chosen.describe()}"), icon=":material/check_circle:")
                saved = chosen
    return saved


def baseline_time(project: Project, settings: BackendSettings, missing: int) -> str:
    """The calls and time of making ``missing`` flat-baseline samples (one line)."""
    calls = math.ceil(max(0, missing) / BaselineOptions.per_call)
    line = timing.calls_text(calls, timing.estimate_time(project, settings, timing.SYNTH_PURPOSES, calls))
    extra = default_extra_calls(max(0, missing), BaselineOptions.per_call)
    return f"{line} Up to {extra} more when the model repeats itself (a flat prompt repeats more than a leaf)."


def gaps_time(project: Project, settings: BackendSettings, rounds: int, per_round: int) -> str:
    """The candidate calls and time of a gap filling (one line; responses and verification add more)."""
    calls = GapOptions(rounds=rounds, per_round=per_round).candidate_calls()
    took = timing.estimate_time(project, settings, timing.GAP_PURPOSES, calls)
    return timing.calls_text(calls, took) + " Responses and verification add calls per candidate."


def gradient_time(project: Project, settings: Any, candidates: int = 0) -> str:
    """The time estimate (one line) of gradient features for the samples without them (tree and
    flat baseline, as the jobs compute) plus ``candidates``."""
    from treesynth_core.coverage.features.proxy import gradient_estimate

    return gradient_estimate(project, settings, candidates=candidates, sample_sets=("tree", BASELINE_SET)).text()


def stale_gradients(settings: Any, stored: str | None) -> str | None:
    """A note when the stored gradient features were made with other settings than the saved ones."""
    from treesynth_core.coverage.features.proxy import gradient_kind

    if stored is None or stored == gradient_kind(settings):
        return None
    return (
        f"G-Vendi and the gradient map show {stored}; the settings now give {gradient_kind(settings)}: "
        "compute gradient features to use them."
    )


def stored_kind(project: Project, space: str) -> str | None:
    """The feature kind the last finished features job of ``space`` stored, if any."""
    blob = project.get_blob(jobs.space_key(space))
    return blob.decode() if blob else None


def report(project: Project, embedding_kind: str, gradient_kind: str | None) -> dict[str, Any] | None:
    """The coverage report from stored features: ``None`` when the tree's embeddings are missing.
    When only gradient features are missing it comes without G-Vendi (``report["gradients_stale"]``);
    when only the flat baseline's features are missing (it grew since), it scores the tree alone
    (``report["baseline_stale"]``)."""
    from treesynth_core.coverage.report import coverage_report

    grads_options = [gradient_kind, None] if gradient_kind else [None]
    for with_baseline in (True, False):
        for grads in grads_options:
            try:
                rep = coverage_report(
                    project,
                    embedder=StoredFeatures(embedding_kind),
                    gradient_featurizer=StoredFeatures(grads) if grads else None,
                    include_baseline=with_baseline,
                )
            except FeaturesMissing as missing:
                if missing.kind == embedding_kind:
                    break  # without gradients they would still be missing
                continue
            rep["gradients_stale"] = bool(gradient_kind) and grads is None
            rep["baseline_stale"] = not with_baseline
            return rep
    return None


def next_baseline_seed(last: jobs.JobState | None, flat_n: int, tree_n: int) -> int:
    """The seed for the next baseline run: the last app run's (0 when the baseline came from the
    command line), or the one after it when a run left the baseline short, even empty (the same seed
    would ask the same questions and get the same, cached, replies: a second try made 0 calls)."""
    seed = int((last.params if last else {}).get("seed", 0))
    tried = last is not None or flat_n > 0  # a run made it short (the command line's leaves no job)
    return seed + 1 if tried and flat_n < tree_n and not (last is not None and last.active) else seed


def points(project: Project, kind: str, seed: int = 0) -> tuple[MapPoints, int] | None:
    """The last map laid out for ``kind`` on the tree's and the baseline's samples, and how many of
    them it lacks (samples added since); ``None`` when no map was laid out yet. Reads the map's
    columns, not the features: a page of a million points stays quick."""
    laid_out = latest_map_points(project, kind, seed=seed, sample_sets=MAP_SETS)
    if laid_out is None:
        return None
    stored = project.sample_sets()
    return laid_out, sum(stored.get(name, 0) for name in MAP_SETS) - len(laid_out)


# -- rendering ------------------------------------------------------------------------------------


def progress_line(kind: str, done: int, total: int, message: str, params: dict[str, Any]) -> tuple[str, str]:
    """What a running coverage job's bar says: ``("Making the flat baseline: 3/15 samples", "12 calls")``.
    Before the job's first report its total comes from its parameters (the baseline's ``n``)."""
    label = JOB_LABELS.get(kind, kind)
    unit = JOB_UNITS.get(kind, "")
    total = total or int(params.get("n", 0) or 0)
    note = message.strip()
    if unit and note.startswith(unit):  # "samples (12 calls)", "samples; embedding": the count says samples
        note = note[len(unit) :].lstrip(";: ").strip()
        if note.startswith("(") and note.endswith(")"):
            note = note[1:-1]
    count = f"{done:,}/{total:,} {unit}".strip() if total else f"{done:,} {unit}".strip() if done else "starting"
    return f"{label}: {count}", note


def job_progress(project: Project, job: jobs.JobState) -> None:
    """A running coverage job: progress bar, its count and note, and a Stop button."""
    label, note = progress_line(job.kind, job.done, job.total or 0, job.message, dict(job.params))
    left = None
    total = job.total or int(job.params.get("n", 0) or 0)
    if job.kind == "baseline" and total:  # its samples left, a call's worth each (at least the one out)
        calls = max(1, math.ceil((total - job.done) / BaselineOptions.per_call))
        left = timing.CallsLeft(timing.SYNTH_PURPOSES, calls)
    job_view.job_progress(project, job, key="coverage", label=label, status=note, calls_left=left)


#: The sections' widgets whose choices outlive a visit to another section (Streamlit drops the state
#: of a widget that was not drawn), and the defaults of those whose default is not their first value.
KEPT_WIDGETS = (
    "coverage.space",
    "coverage.color",
    "coverage.leaf",
    "coverage.show_baseline",
    "coverage.rounds",
    "coverage.per_round",
    "coverage.gap_space",
    "coverage.shots_from",
    "coverage.verify",
    "coverage.answer",
)
WIDGET_DEFAULTS = {"coverage.show_baseline": True, "coverage.per_round": 20}


def section_picker() -> str:
    """The open section, kept in the session: it stays open across reruns, a job's end included,
    and comes back when the control was not drawn on the last run (no features yet). The other
    sections' choices are kept meanwhile."""
    for key in KEPT_WIDGETS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]  # a widget not drawn this run keeps its value
    for key, value in WIDGET_DEFAULTS.items():
        st.session_state.setdefault(key, value)
    widget = f"{SECTION_KEY}.control"
    if widget not in st.session_state:
        st.session_state[widget] = st.session_state.get(SECTION_KEY, "map")
    chosen = st.segmented_control(
        "Section", list(SECTIONS), format_func=lambda name: SECTIONS[name], key=widget, label_visibility="collapsed"
    )
    st.session_state[SECTION_KEY] = chosen or st.session_state.get(SECTION_KEY, "map")
    return str(st.session_state[SECTION_KEY])


def job_outcome(project: Project, job: jobs.JobState | None) -> None:
    """How this page's latest job ended (nothing while it runs, or for other pages' jobs)."""
    if job is None or job_view.page_of(job) != PAGE_COVERAGE or job.kind not in JOB_LABELS:
        return
    job_view.ended(project, job, JOB_LABELS[job.kind])


def _fmt(value: Any, digits: int = 2) -> str:
    return "\u2013" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def equal_n_text(rep: dict[str, Any]) -> str:
    """Which n the cards are scored at, and why, in words."""
    n, tree = rep["n"], rep["sets"]["tree"]["total"]
    flat = rep["sets"].get("baseline")
    if flat is None:
        return f"Scored on all {tree:,} of the tree's samples."
    if n < tree:
        return (
            f"Scored at equal n = {n:,}: a seeded subsample of {n:,} of the tree's {tree:,} samples against the "
            f"flat baseline's {flat['total']:,} (scores grow with n, so both sets are scored at the same n). "
            f"Top up the baseline to compare at {tree:,}."
        )
    return f"Tree and flat baseline both scored at n = {n:,}."


def score_cards(rep: dict[str, Any]) -> None:
    """Vendi, G-Vendi, mean cosine and n of the tree (with the change against the baseline, at equal n)."""
    tree, flat, gain = rep["sets"]["tree"], rep["sets"].get("baseline"), rep.get("gain") or {}
    n = rep["n"]
    cols = st.columns(4)
    for col, (label, key, hint) in zip(
        cols,
        [
            ("Vendi", "vendi", "Effective number of distinct samples (higher: more diverse)."),
            ("G-Vendi", "g_vendi", "Vendi of gradient features (compute gradient features to see it)."),
            ("Mean cosine", "mean_cosine", "Mean pairwise cosine similarity (lower: more diverse)."),
        ],
        strict=False,
    ):
        delta = gain.get(key)
        col.metric(
            label,
            _fmt(tree.get(key)),
            delta=None if delta is None or flat is None else f"{delta:+.2f} vs flat at n = {n}",
            delta_color="inverse" if key == "mean_cosine" else "normal",
            help=f"{hint} Tree's samples at n = {n}.",
            border=True,
        )
    shown = f"{n:,}" if n == tree["total"] else f"{n:,} of {tree['total']:,}"
    cols[3].metric("n", shown, help=equal_n_text(rep), border=True)
    st.caption(equal_n_text(rep))


def leaf_table(rep: dict[str, Any]) -> None:
    rows = rep["leaves"]["rows"]
    data = {
        "path": [r["path"] for r in rows],
        "samples": [r["count"] for r in rows],
        "n": [r["n"] for r in rows],
        "Vendi": [r.get("vendi") for r in rows],
        "mean cosine": [r.get("mean_cosine") for r in rows],
        "flags": [", ".join(r["flags"]) for r in rows],
    }
    st.dataframe(data, key="coverage.leaves", hide_index=True, width="stretch")
    st.caption(md(rep["leaves"]["note"]))


def comparison(rep: dict[str, Any]) -> None:
    """Tree vs flat baseline at equal n, and diversity against n for both."""
    sets = rep["sets"]
    keys = SCORES
    table = {"score": [label for label, _ in keys]}
    for name, scores in sets.items():
        table[name] = [_fmt(scores.get(key), 3) for _, key in keys]
    st.dataframe(table, key="coverage.compare", hide_index=True)
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, rows in rep["curve"].items():
        fig.add_trace(
            go.Scatter(x=[r["n"] for r in rows], y=[r["vendi"] for r in rows], mode="lines+markers", name=name)
        )
    fig.update_layout(
        title="Diversity (Vendi) against n",
        xaxis_title="n",
        yaxis_title="Vendi",
        template="plotly_white",
        height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    st.plotly_chart(fig, key="coverage.curve")


def scatter(pts: MapPoints, color_by: str, highlight: set[str], title: str) -> Any:
    """The map figure with the points of the ``highlight`` leaves ringed (on a big map, those of
    the sample it draws as points)."""
    import plotly.graph_objects as go

    fig = figure(pts, color_by=color_by, title=title)
    drawn = pts.take(drawn_indices(len(pts), above=DENSITY_ABOVE, limit=DRAWN_POINTS))
    marked = drawn.take(drawn.where(lambda o: o.leaf_id in highlight))
    if highlight and len(marked):
        ring = go.Scattergl if len(marked) > WEBGL_ABOVE else go.Scatter
        fig.add_trace(
            ring(
                x=marked.x,
                y=marked.y,
                mode="markers",
                name="chosen leaf",
                hoverinfo="skip",
                marker={"size": 13, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#d62728"}},
            )
        )
    return fig


def selected(event: Any, pts: MapPoints) -> MapPoints:
    """The points a box or lasso selection picked (by sample id, from the traces' customdata), in
    the selection's order."""
    try:
        chosen = event.selection.points if event is not None else []
    except AttributeError:
        chosen = []
    ids = []
    for item in chosen or []:
        data = item.get("customdata") if isinstance(item, dict) else None
        if data:
            ids.append(int(data[0]))
    return pts.take(pts.rows_of(ids))


def has_baseline(pts: MapPoints) -> bool:
    return bool(pts.where(lambda o: o.sample_set == BASELINE_SET).any())


def shown_points(pts: MapPoints, show_baseline: bool) -> MapPoints:
    """The points the map draws: every one, or without the flat baseline's."""
    return pts if show_baseline else pts.take(pts.where(lambda o: o.sample_set != BASELINE_SET))


#: The "Highlight a leaf" picker's "no leaf" option: a real option, never None (a None value shows as
#: Streamlit's "Choose an option" placeholder after a rerun, as ``data_panel.NO_COLUMN`` says).
NO_LEAF = "(none)"


def tree_leaves(pts: MapPoints) -> dict[str, str]:
    """The tree's leaves on the map, with their labels, in order of first appearance."""
    return {o.leaf_id: o.leaf_label for o in pts.present() if o.sample_set == TREE_SET}


def selected_leaves(chosen: MapPoints) -> dict[str, int]:
    """The tree leaves of the selected points, with how many of them each has (flat-baseline points
    have no leaf), in order of first appearance."""
    tree = chosen.take(chosen.where(lambda o: o.sample_set != BASELINE_SET))
    codes, first, counts = np.unique(tree.origin, return_index=True, return_counts=True)
    out: dict[str, int] = {}
    for at in np.argsort(first, kind="stable"):
        leaf = tree.origins[int(codes[at])].leaf_id
        out[leaf] = out.get(leaf, 0) + int(counts[at])
    return out


def selection_list(chosen: MapPoints) -> None:
    """The selected points: their leaves (in path order, siblings together) with how many selected
    samples each, then the samples."""
    leaves = selected_leaves(chosen)
    labels = {o.leaf_id: o.leaf_label for o in chosen.present()}
    flat = len(chosen) - sum(leaves.values())
    st.markdown(
        f"**{len(chosen)} samples selected** in {len(leaves)} leaves"
        + (f" and {flat} from the flat baseline" if flat else "")
        + ":"
    )
    for leaf_id, count in sorted(leaves.items(), key=lambda item: labels[item[0]]):
        st.markdown(f"- {md(labels[leaf_id])} :gray-badge[{count} sample{'s' if count != 1 else ''}]")
    st.dataframe(
        {"path": list(chosen.column("path")), "sample": chosen.text()},
        key="coverage.selection",
        hide_index=True,
        width="stretch",
    )


def downloads(pts: MapPoints, color_by: str, title: str) -> None:
    """Download the map as an interactive HTML page or a PNG (made only when clicked)."""
    left, right, _ = st.columns([1, 1, 2])
    for col, fmt, mime, icon in (
        (left, "html", "text/html", ":material/code:"),
        (right, "png", "image/png", ":material/image:"),
    ):
        col.download_button(
            f"Download the map as {fmt.upper()}",
            data=_deferred(pts, fmt, color_by, title),
            file_name=f"map.{fmt}",
            mime=mime,
            key=f"coverage.download_{fmt}",
            icon=icon,
            on_click="ignore",
            width="stretch",
        )


def _deferred(pts: MapPoints, fmt: str, color_by: str, title: str) -> Any:
    def make() -> bytes:
        return map_bytes(pts, fmt, color_by=color_by, title=title)

    return make
