"""Pieces of the Data page ("bring your own data"): staging an upload, the import preview and its
column mapping, the project's sample sets, the routing summary, the rebalancing plan and result,
and the SynthLLM scaling-law fit.

Nothing here routes, balances or fits by itself: the ``import``, ``route``, ``balance`` and
``grow`` jobs (:mod:`treesynth_core.jobs.background`) do the long work and store it; this module reads the
store through the core functions (:func:`~treesynth_core.data.routing.summary`,
:func:`~treesynth_core.data.balance.plan_balance`, :func:`~treesynth_core.coverage.report.compare_sets`,
:func:`~treesynth_core.scaling.report.fit_report`) and renders what they return. Every text that comes
from a dataset, a tree or an LLM reaches the page escaped: :func:`md` in markdown, tables through
``st.dataframe``, and ``html.escape`` in plotly hover text and labels.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from studio import widgets
from studio.synth_panel import seconds_for
from studio.widgets import md, model_name
from treesynth_core.coverage import SCORES
from treesynth_core.data.balance import shortfall_options
from treesynth_core.data.examples import EXAMPLES, PREFIX, ExampleDataset, resolve
from treesynth_core.data.ingest import ColumnMap, Preview, preview
from treesynth_core.data.routing import ROUTERS, agreement, current_routes, path_label, summary, tree_digest
from treesynth_core.errors import DataError
from treesynth_core.generate.synth import plan_synthesis
from treesynth_core.jobs import background as jobs
from treesynth_core.llm.pricing import duration
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.scaling.points import FITTED_AS, MetricKind, Point, PointsError
from treesynth_core.scaling.report import DEFAULT_THRESHOLD, ScalingReport, fit_report
from treesynth_core.store import Project
from treesynth_core.store.samples import BASELINE_SET, RESERVED_SETS, TREE_SET, dataset_set_problem
from treesynth_core.tree.model import Tree

#: Job kinds this page starts, with what the progress bar says.
JOB_LABELS = {
    "import": "Importing the dataset",
    "route": "Routing the samples",
    "balance": "Rebalancing",
    "grow": "Growing a tree from the data",
}
#: What a job's done/total counts.
JOB_UNITS = {"import": "rows", "route": "samples", "balance": "leaves", "grow": "nodes"}
#: Extensions the uploader takes (``.gz`` for gzipped JSONL and CSV).
UPLOAD_TYPES = ["jsonl", "ndjson", "json", "csv", "tsv", "parquet", "gz"]
UPLOADS = "uploads"
MAP_KEYS = ("instruction", "input", "output", "messages")
MAP_LABELS = {
    "instruction": "Instruction column",
    "input": "Input column (optional context)",
    "output": "Output column (the response)",
    "messages": "Messages column (chat rows)",
}
ROUTER_NAMES = {"llm": "LLM", "embedding": "embedding"}
ROUTER_LABELS = {
    "llm": "LLM: the paper's top-down classifier (temperature 0.3, 'none of these' allowed)",
    "embedding": "Embedding: nearest value description (fast, no LLM)",
}
CELL_CHARS = 200  # preview cells are cut to this many characters
SHOW_TICKS = 12  # leaf paths label the bars' axis up to this many leaves; hover shows them always

# -- jobs -----------------------------------------------------------------------------------------


def is_data_job(job: jobs.JobState) -> bool:
    """A job this page started: import, route, balance, or growth with pivots from a dataset."""
    return job.kind in jobs.DATA_KINDS or (job.kind == "grow" and bool(job.params.get("pivots_from")))


def job_progress(project: Project, job: jobs.JobState) -> None:
    """A running job: progress bar, its note and a Stop button."""
    unit = JOB_UNITS.get(job.kind, "")
    done = f"{job.done:,} of {job.total:,} {unit}" if job.total else f"{job.done:,} {unit}"
    widgets.job_progress(
        project,
        job,
        key="data",
        label=JOB_LABELS.get(job.kind, job.kind),
        status=f"{done.strip()} \u2014 {job.message}" if job.message else done,
    )


def job_outcome(job: jobs.JobState | None) -> None:
    """How this page's latest job ended (nothing while it runs, or for other pages' jobs)."""
    if job is None or job.active or not is_data_job(job):
        return
    label = JOB_LABELS[job.kind]
    if job.status == "done":
        st.success(f"{label}: done \u2014 {md(job.message)}", icon=":material/check_circle:")
    elif job.status == "cancelled":
        st.warning(f"{label} stopped: {md(job.message)}", icon=":material/pause_circle:")
    elif job.status == "interrupted":
        st.warning(f"{label} was interrupted (the app stopped); start it again.", icon=":material/restart_alt:")
    elif job.status == "failed":
        st.error(f"{label} failed: {md(job.error or job.message)}", icon=":material/error:")


def last_job(project: Project, kind: str, sample_set: str) -> jobs.JobState | None:
    """The latest ``kind`` job on ``sample_set``."""
    for record in project.jobs(kind=kind, limit=50):
        if record.params.get("sample_set") == sample_set:
            return jobs.JobState.from_record(record)
    return None


def last_params(project: Project, kind: str) -> dict[str, Any]:
    """The options of the latest ``kind`` job (the defaults after a reload, so a running or finished
    job's choices come back instead of the page's defaults)."""
    records = project.jobs(kind=kind, limit=1)
    return dict(records[0].params) if records else {}


def index_of(options: list[str], value: Any, fallback: int = 0) -> int:
    return options.index(value) if value in options else fallback


# -- import ---------------------------------------------------------------------------------------


def safe_file_name(name: str) -> str:
    """A file name safe to write under ``uploads/``: letters, digits, dash, underscore, dot."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).strip("-")
    return clean.lstrip(".") or "upload"


def stage_upload(project: Project, uploaded: Any) -> Path:
    """Write an uploaded file to ``<project>/uploads/<name>`` (once: again only when its size changed)."""
    dest = project.path / UPLOADS / safe_file_name(uploaded.name)
    if dest.is_file() and dest.stat().st_size == uploaded.size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    uploaded.seek(0)
    with part.open("wb") as out:
        shutil.copyfileobj(uploaded, out, length=1 << 20)
    part.replace(dest)
    return dest


#: The bundled example dataset the one-click button imports (see :mod:`treesynth_core.data.examples`).
EXAMPLE = EXAMPLES["humaneval"]
EXAMPLE_SPEC = PREFIX + EXAMPLE.name
EXAMPLE_LABEL = "Example: HumanEval"


def resolve_source(spec: str) -> tuple[Path, ExampleDataset | None]:
    """The file of a typed path (``~`` expanded) or of ``example:NAME``; DataError if there is none."""
    text = spec.strip()
    path, example = resolve(text)
    if example is None:
        path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"no file or folder at {path}")
    return path, example


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


@st.cache_data(show_spinner=False, max_entries=16)
def _preview(path: str, fmt: str | None, encoding: str, stamp: tuple[int, int]) -> Preview:
    return preview(Path(path), fmt=fmt, encoding=encoding)


def load_preview(path: Path, fmt: str | None, encoding: str) -> Preview:
    """:func:`ingest.preview` of the first rows (cached while the file is unchanged)."""
    return _preview(str(path), fmt, encoding or "utf-8", _stamp(path))


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "\u2026"


def preview_table(seen: Preview) -> list[dict[str, str]]:
    """The preview's rows as text cells (cut to :data:`CELL_CHARS`), one column per source column."""
    return [{column: _cell(row.get(column, "")) for column in seen.columns} for row in seen.rows]


def source_token(path: Path, fmt: str | None) -> str:
    """A short id of the chosen file, so the mapping widgets start from its suggestion."""
    return hashlib.blake2b(f"{path}|{fmt}".encode(), digest_size=4).hexdigest()


def initial_map(seen: Preview, example: ExampleDataset | None) -> ColumnMap:
    """The example's own mapping, else the one suggested from the column names."""
    if example is not None:
        return ColumnMap(**example.mapping)
    return seen.suggested


def mapping_widgets(seen: Preview, initial: ColumnMap, token: str, *, disabled: bool = False) -> ColumnMap:
    """One selectbox per mapping key, pre-filled with ``initial``; the mapping they describe."""
    chosen: dict[str, str | None] = {}
    cols = st.columns(len(MAP_KEYS))
    options: list[str | None] = [None, *seen.columns]
    for col, key in zip(cols, MAP_KEYS, strict=True):
        start = getattr(initial, key)
        chosen[key] = col.selectbox(
            MAP_LABELS[key],
            options,
            index=options.index(start) if start in options else 0,
            format_func=lambda c: "(none)" if c is None else str(c),
            key=f"data.map.{key}.{token}",
            disabled=disabled,
        )
    return ColumnMap(**chosen)


def import_params(
    path: Path, cmap: ColumnMap, *, sample_set: str, encoding: str, skip_empty: bool, fmt: str | None
) -> dict[str, Any]:
    """The ``import`` job's params."""
    params: dict[str, Any] = {
        "file": str(path),
        "map": cmap.columns(),
        "sample_set": sample_set,
        "encoding": encoding or "utf-8",
        "skip_empty": skip_empty,
    }
    if fmt:
        params["format"] = fmt
    return params


def set_name_problem(name: str, sets: dict[str, int]) -> str | None:
    """Why ``name`` cannot take a new import (None when it can): the core's naming rules
    (:func:`~treesynth_core.store.samples.dataset_set_problem`), then whether the set is taken."""
    problem = dataset_set_problem(name)
    if problem is not None:
        return as_sentence(problem)
    if sets.get(name):
        return f"The sample set {name!r} already holds {sets[name]:,} samples: choose another name or delete it below."
    return None


def as_sentence(problem: str) -> str:
    """A core problem line ("give the set a name") as the sentence the page shows ("Give the set a name.")."""
    return problem[:1].upper() + problem[1:] + "."


def _counts(project: Project, sample_set: str) -> tuple[tuple[str, int], ...]:
    """Samples per leaf of a set: part of every cache key below (cheap: one GROUP BY)."""
    return tuple(sorted(project.sample_counts(sample_set=sample_set).items()))


# -- sample sets ----------------------------------------------------------------------------------


def dataset_names(sets: dict[str, int], balanced: frozenset[str] = frozenset()) -> list[str]:
    """Sample sets that hold a dataset (imported or rebalanced), not synthesis or the baseline; imported
    sets first, so the pickers default to a source rather than to a rebalanced result."""
    names = [name for name in sets if name not in RESERVED_SETS]
    return sorted(names, key=lambda name: name in balanced)


def balanced_sets(project: Project) -> frozenset[str]:
    """The sets rebalancing jobs wrote."""
    done = project.jobs(kind="balance", limit=100)
    return frozenset(str(job.params.get("target_set", "balanced")) for job in done)


def set_kind(name: str) -> str:
    if name == TREE_SET:
        return "synthesized leaf by leaf"
    if name == BASELINE_SET:
        return "flat baseline (no tree)"
    return "dataset (imported or rebalanced)"


def sets_table(sets: dict[str, int]) -> None:
    st.dataframe(
        {"sample set": list(sets), "samples": list(sets.values()), "what": [set_kind(n) for n in sets]},
        key="data.sets",
        hide_index=True,
        width="stretch",
    )


@st.cache_data(show_spinner=False, max_entries=16)
def _first_rows(_project: Project, key: tuple[Any, ...], sample_set: str, n: int) -> list[dict[str, str]]:
    tree = _project.tree()
    rows = []
    for sample in _project.samples(sample_set=sample_set)[:n]:
        where = path_label(tree, sample.leaf_id) if sample.leaf_id in tree.nodes else "(not routed)"
        rows.append(
            {
                "instruction": _cell(sample.instruction),
                "response": _cell(sample.response or ""),
                "leaf": where,
                "provenance": str(sample.extra.get("provenance", "")),
            }
        )
    return rows


def first_rows(project: Project, sample_set: str, n: int = 20) -> list[dict[str, str]]:
    """The first ``n`` samples of a set, as text (the leaf's path once routed); cached while the set's
    leaves and the tree are unchanged."""
    key = (str(project.path), tree_digest(project.tree()), _counts(project, sample_set))
    return _first_rows(project, key, sample_set, n)


# -- routing --------------------------------------------------------------------------------------


def has_no_leaves(tree: Tree) -> bool:
    """True while the tree is only its root (no criterion to route by)."""
    return [leaf.id for leaf in tree.leaves()] == [tree.root.id]


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
        {"path": path_label(tree, leaf.id), "count": report["per_leaf"].get(leaf.id, 0)} for leaf in tree.leaves()
    ]
    return report


def route_view(project: Project, sample_set: str) -> dict[str, Any] | None:
    """:func:`routing.summary` of the routes on the current tree, of the router that placed the samples
    (the latest route job's), with the agreement of the two routers where both routed; None before
    any routing. Read from the store, never recomputed; cached until a route job or the tree changes."""
    tree = project.tree()
    total = project.sample_sets().get(sample_set, 0)
    last = last_job(project, "route", sample_set)
    stamp = (last.id, last.status, last.finished, last.done) if last else None
    preferred = str(last.params.get("router")) if last else None
    counts = _counts(project, sample_set)
    return _route_view(project, (str(project.path), tree_digest(tree), stamp, counts), sample_set, preferred, total)


def route_summary(report: dict[str, Any]) -> None:
    """Metric cards, where "none fits" stopped, the agreement and samples per leaf."""
    cols = st.columns(5)
    cards = [
        ("Routed", report["routed"], f"Samples the {report['router']} router has placed, of {report['total']:,}."),
        ("In a leaf", report["leaf"], "Routed all the way down to a leaf."),
        ("None fits", report["none_fits"], "Stopped at a node where no value fits: kept, unrouted, counted below."),
        ("Errors", report["errors"], "The LLM could not classify them even after re-asking: kept, unrouted."),
        ("Not routed", report["not_routed"], "Samples without a route on the current tree yet (new, or stopped)."),
    ]
    for col, (label, value, hint) in zip(cols, cards, strict=True):
        col.metric(label, value, help=hint, border=True)
    st.caption(md(f"Placed by the {report['router']} router, on the current tree."))
    agree = report.get("agreement")
    if agree and agree["rate"] is not None:
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


def _bar_layout(fig: Any, title: str, n: int) -> None:
    legend = {"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"}
    fig.update_layout(
        title=title, template="plotly_white", height=360, legend=legend, margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )
    fig.update_xaxes(showticklabels=n <= SHOW_TICKS, title="leaf (hover for its path)")
    fig.update_yaxes(title="samples")


def leaf_figure(leaves: Sequence[dict[str, Any]]) -> Any:
    """Samples per leaf, fullest first; the leaf's path (escaped) on hover."""
    import plotly.graph_objects as go

    rows = sorted(leaves, key=lambda row: -row["count"])
    paths = [html.escape(row["path"], quote=False) for row in rows]
    fig = go.Figure(
        go.Bar(
            x=paths,
            y=[row["count"] for row in rows],
            marker_color="#1f77b4",
            hovertemplate="%{x}<br>%{y} samples<extra></extra>",
        )
    )
    _bar_layout(fig, "Samples per leaf", len(rows))
    return fig


# -- rebalancing ----------------------------------------------------------------------------------


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
    key = (str(project.path), _tree_stamp(project.tree()), _counts(project, source))
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
    return (
        f"Synthesizing the {plan['to_synthesize']:,} missing samples takes about {calls:,} LLM calls, about "
        f"{duration(seconds_for(calls, project, settings))} on {settings.describe()}."
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
        {"leaf": path_label(tree, leaf.id), "before": before.get(leaf.id, 0), "after": after.get(leaf.id, 0)}
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
    return _provenance(project, (str(project.path), _counts(project, target)), target)


def before_after_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """Before and after per leaf, grouped bars, fullest leaf (before) first."""
    import plotly.graph_objects as go

    rows = sorted(rows, key=lambda row: (-row["before"], -row["after"]))
    paths = [html.escape(row["leaf"], quote=False) for row in rows]
    fig = go.Figure()
    for name, colour in (("before", "#9e9e9e"), ("after", "#2ca02c")):
        fig.add_trace(
            go.Bar(
                x=paths,
                y=[row[name] for row in rows],
                name=name,
                marker_color=colour,
                hovertemplate=f"%{{x}}<br>{name}: %{{y}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    _bar_layout(fig, "Samples per leaf, before and after", len(rows))
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
    key = (str(project.path), _counts(project, source), _counts(project, target))
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


def points_frame(points: Sequence[tuple[float, float]]) -> Any:
    """An editable table of (size, metric) rows."""
    import pandas as pd

    return pd.DataFrame(
        {"size": [float(s) for s, _ in points], "metric": [float(m) for _, m in points]}, dtype="float64"
    )


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PointsError(f"{value!r} is not a number") from None
    return None if math.isnan(number) else number


def table_points(frame: Any) -> list[Point]:
    """The edited table's rows as points (blank rows skipped); PointsError names the bad row."""
    points = []
    for row, (size_cell, metric_cell) in enumerate(zip(frame["size"], frame["metric"], strict=True), 1):
        try:
            size, metric = _number(size_cell), _number(metric_cell)
        except PointsError as exc:
            raise PointsError(f"row {row}: {exc}") from None
        if size is None and metric is None:
            continue
        if size is None or metric is None:
            raise PointsError(f"row {row}: give both a size and a metric")
        if size <= 0:
            raise PointsError(f"row {row}: size {size:g} must be > 0 (the laws take log D)")
        points.append(Point(size, metric))
    return points


@st.cache_data(show_spinner=False, max_entries=16)
def fit(
    points: tuple[Point, ...], kind: MetricKind, n_test: int | None, threshold: float, model: str = ""
) -> ScalingReport:
    """:func:`scaling.fit_report` (seed 0), cached: the same points give the same fit."""
    return fit_report(list(points), metric_kind=kind, n_test=n_test, threshold=threshold, seed=0, model=model)


def default_threshold(kind: MetricKind) -> float:
    return DEFAULT_THRESHOLD[kind]


def _size(value: float | None) -> str:
    return "beyond the search range" if value is None else f"{value:,.4g}"


def fit_view(report: ScalingReport, *, size_label: str = "size") -> None:
    """Plateau, both fits' parameters and held-out errors, the extrapolation and the figure."""
    cols = st.columns(3)
    unit = "points" if report.metric_kind == "accuracy_percent" else "of the metric"
    hint = f"The size ({size_label}) beyond which 10x more data gains less than {report.threshold:g} {unit}."
    cols[0].metric(
        f"Plateau, rectified law ({size_label})", _size(report.plateau.get("rectified")), border=True, help=hint
    )
    cols[1].metric(f"Plateau, power law ({size_label})", _size(report.plateau.get("power")), border=True, help=hint)
    preferred = report.preferred
    cols[2].metric(
        "Better on held-out points",
        preferred or "\u2013 (no held-out points)",
        border=True,
        help="The law with the lower RMSE on the held-out (largest) sizes.",
    )
    columns = [
        "law",
        "B",
        "D_l",
        "beta",
        "E",
        "B / D_l",
        "ceiling",
        "fit RMSE",
        "held-out RMSE",
        "held-out max |error|",
        "plateau",
    ]
    rows: dict[str, list[Any]] = {column: [] for column in columns}
    for law, law_fit in report.fits.items():
        held = report.held_out.get(law)
        values = [
            law,
            law_fit.B,
            law_fit.D_l if law == "rectified" else None,
            law_fit.beta,
            law_fit.E,
            law_fit.initial_gap,
            report.ceiling(law),
            law_fit.rmse,
            held.rmse if held else None,
            held.max_abs_error if held else None,
            report.plateau.get(law),
        ]
        for column, value in zip(rows, values, strict=True):
            rows[column].append(value if isinstance(value, str) else _fmt4(value))
    st.dataframe(rows, key="data.scale.fits", hide_index=True, width="stretch")
    st.caption(
        f"Fitted on {len(report.fit_points)} points, {len(report.test_points)} held out. The laws are "
        f"fitted to {FITTED_AS[report.metric_kind]}; the ceiling is the metric as the data grows without "
        "bound."
    )
    for note in report.notes:
        st.caption(md(note))
    if report.extrapolation:
        ext = report.extrapolation
        st.dataframe(
            {
                "size": [_fmt4(row["size"]) for row in ext],
                **{law: [_fmt4(row.get(law)) for row in ext] for law in report.fits},
            },
            key="data.scale.extrapolation",
            hide_index=True,
        )
    title = "Scaling law" + (f": {html.escape(report.model, quote=False)}" if report.model else "")
    st.plotly_chart(
        scaling_plot(report, size_label=html.escape(size_label, quote=False), title=title), key="data.scale.figure"
    )


def _fmt4(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    return f"{value:.4g}"


def scaling_plot(report: ScalingReport, *, size_label: str, title: str) -> Any:
    """The plotly figure of a fit (:func:`treesynth_core.scaling.plot.scaling_figure`), page-wide."""
    from treesynth_core.scaling.plot import scaling_figure

    fig = scaling_figure(report, title=title, size_label=size_label)
    fig.update_layout(width=None, autosize=True)
    return fig
