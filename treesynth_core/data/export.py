"""Exports: JSONL in chat "messages" form, Parquet, and a Hugging Face dataset folder, each with
the tree JSON and a dataset card beside it.

Every row carries the chat ``messages``, the flat ``instruction``/``response``, the ``leaf_id``,
the ``path`` (list of {criterion, value}) and one column per criterion seen in any path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import TreeSynthError
from ..store.contamination import Check
from ..store.samples import TREE_SET, UNROUTED, Sample
from ..text import escape_markdown as escape_markdown  # its old home: imports from here still work
from ..tree import model as T
from ..tree.file import tree_to_json
from .card_concepts import CONCEPTS, concepts_section
from .card_concepts import INTRO as CONCEPTS_INTRO
from .card_notes import NO_NOTES, GenerationNotes, generation_notes, generation_section

if TYPE_CHECKING:
    from ..store.project import Project

Format = Literal["jsonl", "parquet", "hf"]
FIXED_COLUMNS = ("id", "leaf_id", "path", "instruction", "response", "messages", "model", "sample_set", "provenance")


def criterion_columns(samples: Sequence[Sample]) -> dict[str, str]:
    """Criterion name -> column name, in order of first appearance; renamed on clashes."""
    columns: dict[str, str] = {}
    for sample in samples:
        for step in sample.path:
            name = step["criterion"]
            if name not in columns:
                column = name if name not in FIXED_COLUMNS else f"{name} (criterion)"
                columns[name] = column
    return columns


def to_rows(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """The rows of an export, one per sample."""
    columns = criterion_columns(samples)
    rows = []
    for s in samples:
        messages = s.extra.get("messages") or [{"role": "user", "content": s.instruction}]
        if s.response and "messages" not in s.extra:
            messages.append({"role": "assistant", "content": s.response})
        row: dict[str, Any] = {
            "id": s.id,
            "messages": messages,
            "instruction": s.instruction,
            "response": s.response,
            "leaf_id": s.leaf_id,
            "path": [{"criterion": p["criterion"], "value": p["value"]} for p in s.path],
            "model": s.model,
            "sample_set": s.sample_set,
            "provenance": s.extra.get("provenance", "synthesized"),
        }
        values = {p["criterion"]: p["value"] for p in s.path}
        for name, column in columns.items():
            row[column] = values.get(name)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ExportResult:
    data: Path
    tree: Path
    card: Path
    rows: int
    #: Samples of the tree set left out because their leaf is pruned (or gone) in the exported tree.
    left_out: int = 0
    #: Samples left out because the project recorded them as contaminated.
    excluded: int = 0


def live_samples(tree: T.Tree, samples: Sequence[Sample]) -> list[Sample]:
    """``samples`` without those of the tree set whose leaf is pruned, under a pruned node, or gone
    from ``tree``: what an export of ``tree`` includes (other sets are kept whole)."""
    return [s for s in samples if s.sample_set != TREE_SET or (s.leaf_id in tree.nodes and tree.is_active(s.leaf_id))]


def dataset_card(
    tree: T.Tree,
    samples: Sequence[Sample],
    *,
    fmt: str,
    today: dt.date | None = None,
    checks: Sequence[Check] = (),
    excluded: int | None = 0,
    notes: GenerationNotes = NO_NOTES,
) -> str:
    """A Hugging Face-style README: task, tree summary, counts per leaf, generator, date, what the
    samples were checked against for contamination (``checks``; ``excluded``: contaminated samples left out),
    and verification and gap filling when they were used (``notes``)."""
    today = today or dt.date.today()
    counts = Counter(s.leaf_id for s in samples)
    models = sorted({s.model for s in samples if s.model})
    leaves = tree.leaves(approved_only=True) or tree.leaves()
    filled = sum(1 for leaf in leaves if counts.get(leaf.id))
    in_no_leaf = sum(n for leaf_id, n in counts.items() if leaf_id == UNROUTED or leaf_id not in tree.nodes)
    criteria_by_depth: dict[int, list[str]] = {}
    for node in tree.nodes.values():
        if node.split_criterion and tree.is_active(node.id):
            names = criteria_by_depth.setdefault(node.depth + 1, [])
            if node.split_criterion not in names:
                names.append(node.split_criterion)
    with_response = sum(1 for s in samples if s.response)
    origins = Counter(s.extra.get("provenance", "synthesized") for s in samples)
    origin_text = ", ".join(f"{n} {name}" for name, n in sorted(origins.items()))
    sources = Counter(str(s.extra["source"]) for s in samples if s.extra.get("source"))
    tags = "synthetic, treesynth" if origins.get("synthesized") or origins.get(CONCEPTS) else "treesynth"
    lines = [
        "---",
        "language: [en]",
        f"tags: [{tags}]",
        f"size_categories: [{_size_category(len(samples))}]",
        "---",
        "",
        f"# {escape_markdown(tree.task)}",
        "",
        _intro(origins),
        "",
        "| | |",
        "|---|---|",
        f"| Task | {_cell(tree.task)} |",
        f"| Style | {_cell(tree.style or '-')} |",
        f"| Samples | {len(samples)} ({with_response} with responses; {_cell(origin_text)}) |",
        f"| Leaves | {len(leaves)} ({filled} with samples)"
        + (f"; {in_no_leaf} samples are in no leaf (no value fitted, or not routed)" if in_no_leaf else "")
        + " |",
        f"| Generator model(s) | {_cell(', '.join(models) or '-')} |",
        *(
            [f"| Imported from | {_cell(', '.join(f'{name} ({n} rows)' for name, n in sources.most_common()))} |"]
            if sources
            else []
        ),
        f"| Exported | {today.isoformat()} as {fmt} |",
        "",
        "## Tree",
        "",
    ]
    for depth in sorted(criteria_by_depth):
        lines.append(f"- Level {depth}: {_cell(', '.join(criteria_by_depth[depth]))}")
    lines += ["", "## Samples per leaf", "", "| leaf | path | samples |", "|---|---|---|"]
    for leaf in leaves:
        path = " > ".join(f"{s.criterion}: {s.value}" for s in tree.path(leaf.id)) or "(root)"
        lines.append(f"| {_cell(leaf.id)} | {_cell(path)} | {counts.get(leaf.id, 0)} |")
    lines += [
        "",
        "## Columns",
        "",
        "`messages` (chat form), `instruction`, `response`, `leaf_id`, `path` (list of criterion/value), "
        "`provenance` (`original`: imported from a dataset; `synthesized`: written by the model), and one column "
        "per criterion. The tree itself is in the `*.tree.json` file beside the data.",
        "",
        *concepts_section(samples, _cell),
        *generation_section(samples, notes),
        *_decontamination(checks, excluded),
    ]
    return "\n".join(lines)


def _decontamination(checks: Sequence[Check], excluded: int | None) -> list[str]:
    """The card's section on what the samples were checked against, with the counts."""
    lines = ["## Decontamination", ""]
    if not checks:
        return [*lines, "Not checked against any evaluation set (`treesynth decontaminate`).", ""]
    n = checks[-1].n
    short = min(8, n)
    lines += [
        f"Checked by word n-gram overlap after normalization (NFKC, lowercase, punctuation removed): {n}-grams, "
        f"{short}-grams for eval items under {2 * n} words, items under {short} words matched whole.",
        "",
        "| eval set | items | n | checked on | samples checked | contaminated | dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        items = f"{c.items}" + (f" ({c.skipped_items} too short to check)" if c.skipped_items else "")
        lines.append(
            f"| {_cell(c.source)} | {items} | {c.n} | {_cell(c.created[:10])} | {c.checked} | {c.flagged} "
            f"| {c.dropped} |"
        )
    if excluded is None:
        kept = "Samples found contaminated and not dropped remain in this export (exported with --keep-contaminated)."
    else:
        kept = f"{excluded} samples found contaminated (and not dropped) were left out of this export."
    lines += ["", kept, ""]
    return lines


def _intro(origins: Counter[str]) -> str:
    """What the dataset is, by where its rows came from (synthesized, imported, or both)."""
    tree_text = (
        "the task's data space was split into a tree of mutually exclusive subspaces (TreeSynth, arXiv 2503.17195)"
    )
    if set(origins) == {CONCEPTS}:
        return CONCEPTS_INTRO
    if not origins.get("original"):
        return (
            f"Synthetic dataset made with TreeSynth Studio: {tree_text} and samples were written per leaf, "
            "conditioned on the leaf's root-to-leaf path."
        )
    if not origins.get("synthesized"):
        return (
            f"A dataset organized with TreeSynth Studio: {tree_text} and every imported sample was routed "
            "to a leaf (the `path` column); samples that fit no leaf have an empty `leaf_id`."
        )
    return (
        f"A rebalanced dataset made with TreeSynth Studio: {tree_text}; imported samples were routed to "
        "the leaves, crowded leaves downsampled, and short leaves filled with samples synthesized in the leaf "
        "(the `provenance` column says which rows are original and which are synthesized)."
    )


def _cell(text: str) -> str:
    """Text from the tree, the samples or the LLM in a table cell or list item of the card."""
    return escape_markdown(text)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def _write_error(path: Path, exc: OSError) -> TreeSynthError:
    """One line for a write that failed: what, where, why, and what to do."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        hint = "free some space or export to another disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "export to a folder you can write to"
    else:
        hint = "check the --out path"
    return TreeSynthError(f"could not write {path}: {why}: {hint} (nothing was replaced)")


def _write_all(files: Sequence[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write each ``(path, write)`` pair all or nothing: ``write(tmp)`` fills a temporary file beside
    ``path``, and only once every file is written do they replace their targets. A failed write
    (an unwritable folder, a full disk) removes the temporary files and raises one clear line; the
    files of an earlier export stay as they were."""
    temps: list[tuple[Path, Path]] = []
    path = files[0][0]
    try:
        for path, write in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            os.chmod(name, 0o644)  # an export is for sharing, as a plain file would be
            temps.append((Path(name), path))
            write(Path(name))
        for tmp, path in temps:
            os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _text(text: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    return write


def _parquet(rows: list[dict[str, Any]]) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp)

    return write


def export_set(
    project: Project, sample_set: str, fmt: Format, out: Path, *, exclude_contaminated: bool = True
) -> ExportResult:
    """Export one sample set of ``project`` (see :func:`export_samples`); samples recorded as contaminated
    (``treesynth decontaminate``) are left out unless ``exclude_contaminated`` is False, and the card says
    what the set was checked against and how many were left out."""
    samples = project.samples(sample_set=sample_set)
    excluded: int | None = None
    if exclude_contaminated:
        flagged = {hit.sample_id for hit in project.contamination(sample_set)}
        kept = [s for s in samples if s.id not in flagged]
        excluded, samples = len(samples) - len(kept), kept
        if excluded and not samples:
            raise TreeSynthError(
                f"all {excluded} samples of {sample_set!r} were found contaminated: nothing to export "
                "(export them anyway with --keep-contaminated)"
            )
    return export_samples(
        project.tree(),
        samples,
        fmt,
        out,
        checks=project.contamination_checks(sample_set),
        excluded=excluded,
        notes=generation_notes(project),
    )


def export_samples(
    tree: T.Tree,
    samples: Sequence[Sample],
    fmt: Format,
    out: Path,
    *,
    checks: Sequence[Check] = (),
    excluded: int | None = 0,
    notes: GenerationNotes = NO_NOTES,
) -> ExportResult:
    """Write the samples to ``out`` in ``fmt``, plus the tree JSON and a dataset card.

    For ``jsonl``/``parquet``, ``out`` is the data file; the tree and card go beside it as
    ``<stem>.tree.json`` and ``<stem>.README.md``. For ``hf``, ``out`` is a folder made with
    ``datasets.Dataset.save_to_disk`` holding ``tree.json`` and ``README.md`` too. The files are
    written all or nothing (see :func:`_write_all`). Samples of pruned leaves are left out
    (:func:`live_samples`); the result counts them.
    """
    kept = live_samples(tree, samples)
    left_out = len(samples) - len(kept)
    if not kept:
        if left_out:
            raise TreeSynthError(f"all {left_out} samples belong to pruned leaves: nothing to export")
        raise TreeSynthError("there are no samples to export yet: run `treesynth synth` first")
    card = dataset_card(tree, kept, fmt=fmt, checks=checks, excluded=excluded, notes=notes)
    result = _export(tree, kept, card, fmt, Path(out))
    return replace(result, left_out=left_out, excluded=excluded or 0)


def _export(tree: T.Tree, samples: Sequence[Sample], card: str, fmt: Format, out: Path) -> ExportResult:
    rows = to_rows(samples)
    if fmt == "hf":
        return _export_hf(tree, rows, card, out)
    if fmt == "jsonl":
        data = _text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif fmt == "parquet":
        data = _parquet(rows)
    else:
        raise TreeSynthError(f"unknown export format {fmt!r}; use jsonl, parquet or hf")
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    tree_path = out.with_name(f"{stem}.tree.json")
    card_path = out.with_name(f"{stem}.README.md")
    _write_all([(out, data), (tree_path, _text(tree_to_json(tree))), (card_path, _text(card))])
    return ExportResult(out, tree_path, card_path, len(rows))


def _export_hf(tree: T.Tree, rows: list[dict[str, Any]], card: str, out: Path) -> ExportResult:
    from datasets import Dataset

    if out.exists() and any(out.iterdir()):
        raise TreeSynthError(f"{out} exists and is not empty; choose a new folder for the dataset")
    staging: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=".hf-"))
        Dataset.from_list(rows).save_to_disk(str(staging / "data"))
        (staging / "data" / "tree.json").write_text(tree_to_json(tree), encoding="utf-8")
        (staging / "data" / "README.md").write_text(card, encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(staging / "data", out)
    except OSError as exc:
        raise _write_error(out, exc) from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out, out / "tree.json", out / "README.md", len(rows))
