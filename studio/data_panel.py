"""Pieces of the Data page ("bring your own data"): staging an upload, the import preview and its
column mapping and the project's sample sets. The routing summary is in :mod:`studio.route_panel`,
the rebalancing plan and result in :mod:`studio.balance_panel`, the scaling-law fit in :mod:`studio.scaling_panel`.

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
import json
import re
import shutil
from pathlib import Path
from typing import Any

import streamlit as st

from studio import job_view, security
from studio.widgets import PAGE_DATA, md
from treesynth_core.data.examples import EXAMPLES, PREFIX, ExampleDataset, resolve
from treesynth_core.data.ingest import ColumnMap, Preview, preview
from treesynth_core.data.routing import path_label, tree_digest
from treesynth_core.errors import DataError
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.store.samples import BASELINE_SET, RESERVED_SETS, TREE_SET, dataset_set_problem
from treesynth_core.tree.model import Tree

#: Job kinds this page starts, with what the progress bar says.
JOB_LABELS = {
    "import": "Importing the dataset",
    "route": "Routing the samples",
    "balance": "Rebalancing",
    "grow": "Growing a tree from the data",
    "decontaminate": "Decontaminating",
}
#: What a job's done/total counts.
JOB_UNITS = {"import": "rows", "route": "samples", "balance": "leaves", "grow": "nodes", "decontaminate": "samples"}
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
    "embedding": "Embedding: the nearest leaf, described by its whole path (fast, no LLM)",
}
CELL_CHARS = 200  # preview cells are cut to this many characters

# -- jobs -----------------------------------------------------------------------------------------


def local_path(where: Any, label: str, *, key: str, placeholder: str) -> str:
    """A text input for a path on this machine, in ``where`` (``st`` or a column); none when the app is
    shared read-only (no reading files on this machine by path): then ``""``."""
    if security.read_only():
        return ""
    return str(where.text_input(label, key=key, placeholder=placeholder))


def eval_choices(sets: dict[str, int], checked: str) -> list[str]:
    """What a set can be checked against: the shipped example and the project's other sets."""
    return [EXAMPLE_SPEC, *(f"set:{name}" for name in sets if name != checked)]


def eval_label(spec: str) -> str:
    """How an eval set is named in the picker."""
    return f"{EXAMPLE.title.split(':')[0]} (shipped)" if spec == EXAMPLE_SPEC else f"the sample set {spec[4:]}"


def contamination_view(project: Project, sample_set: str) -> None:
    """What ``sample_set`` was checked against, with the counts, and the samples recorded as contaminated."""
    checks = project.contamination_checks(sample_set)
    if not checks:
        st.caption("Not checked against any eval set yet.")
        return
    rows = [
        {
            "eval set": c.source,
            "items": c.items,
            "too short": c.skipped_items,
            "n": c.n,
            "checked on": c.created[:16].replace("T", " "),
            "samples checked": c.checked,
            "contaminated": c.flagged,
            "dropped": c.dropped,
        }
        for c in checks
    ]
    st.dataframe(rows, key="data.decon.checks", hide_index=True, width="stretch")
    hits = project.contamination(sample_set)
    if not hits:
        st.caption(md(f"No sample of {sample_set} is recorded as contaminated."))
        return
    st.caption(
        md(f"{len({h.sample_id for h in hits}):,} samples of {sample_set} are recorded as contaminated:")
        + " exports leave them out unless you keep them (the Export page)."
    )
    shown = [{"sample": h.sample_id, "eval set": h.source, "eval item": h.item, "shared words": h.ngram} for h in hits]
    st.dataframe(shown[:200], key="data.decon.hits", hide_index=True, width="stretch")


def job_progress(project: Project, job: jobs.JobState) -> None:
    """A running job: progress bar, its note and a Stop button."""
    unit = JOB_UNITS.get(job.kind, "")
    done = f"{job.done:,} of {job.total:,} {unit}" if job.total else f"{job.done:,} {unit}"
    job_view.job_progress(
        project,
        job,
        key="data",
        label=JOB_LABELS.get(job.kind, job.kind),
        status=f"{done.strip()} \u2014 {job.message}" if job.message else done,
    )


def job_outcome(project: Project, job: jobs.JobState | None, *, imports: bool = False) -> None:
    """How this page's latest job ended (nothing while it runs, or for other pages' jobs): imports
    alone with ``imports`` (their outcome shows at the Import button, where the person looks), the
    other kinds without."""
    if job is None or job_view.page_of(job) != PAGE_DATA or job.kind not in JOB_LABELS:
        return
    if (job.kind == "import") == imports:
        job_view.ended(project, job, JOB_LABELS[job.kind])


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


#: The column pickers' "no column" option: a real option, never None (Streamlit shows a None value
#: as its "Choose an option" placeholder after a rerun, so the picker would flip between the two).
NO_COLUMN = "(none)"
#: The import's Format picker's "guess it" option, a real option for the same reason.
FORMAT_FROM_NAME = "from the file name"


def mapping_widgets(seen: Preview, initial: ColumnMap, token: str, *, disabled: bool = False) -> ColumnMap:
    """One selectbox per mapping key, pre-filled with ``initial``; the mapping they describe."""
    chosen: dict[str, str | None] = {}
    cols = st.columns(len(MAP_KEYS))
    options = [NO_COLUMN, *(c for c in seen.columns if c != NO_COLUMN)]
    for col, key in zip(cols, MAP_KEYS, strict=True):
        start = getattr(initial, key)
        picked = col.selectbox(
            MAP_LABELS[key],
            options,
            index=options.index(start) if start in options else 0,
            key=f"data.map.{key}.{token}",
            disabled=disabled,
        )
        chosen[key] = None if picked == NO_COLUMN else picked
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


def set_counts(project: Project, sample_set: str) -> tuple[tuple[str, int], ...]:
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
    key = (str(project.path), tree_digest(project.tree()), set_counts(project, sample_set))
    return _first_rows(project, key, sample_set, n)


# -- routing --------------------------------------------------------------------------------------


def has_no_leaves(tree: Tree) -> bool:
    """True while the tree is only its root (no criterion to route by)."""
    return [leaf.id for leaf in tree.leaves()] == [tree.root.id]
