"""Export helpers for the app: where exports go, and the files to offer for download."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from studio.projects import folder_name
from treesynth_core.data.export import ExportResult, Format, export_set
from treesynth_core.store import Project
from treesynth_core.store.samples import TREE_SET

EXTENSIONS: dict[str, str] = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}
MIME = {
    ".jsonl": "application/jsonl",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".md": "text/markdown",
    ".zip": "application/zip",
}


@dataclass(frozen=True)
class Download:
    label: str
    name: str
    data: bytes
    mime: str


def export_dir(project: Project) -> Path:
    return project.path / "exports"


def run_export(
    project: Project, fmt: Format, name: str, sample_set: str = TREE_SET, *, exclude_contaminated: bool = True
) -> ExportResult:
    """Export one sample set of the project under ``<project>/exports/`` as ``name`` in ``fmt`` (without the
    samples recorded as contaminated unless ``exclude_contaminated`` is False, as the CLI)."""
    stem = folder_name(name)
    out = export_dir(project) / (stem + EXTENSIONS[fmt])
    if fmt == "hf" and out.exists():
        out = _free_folder(out)
    return export_set(project, sample_set, fmt, out, exclude_contaminated=exclude_contaminated)


def set_label(name: str) -> str:
    """How a sample set is named in the set picker. Not its count (the page's Samples metric shows it):
    a browser sends the choice back as its text, so a choice whose count changed would be reset."""
    kinds = {TREE_SET: "the tree's synthesized samples", "baseline": "the flat baseline"}
    return f"{name} ({kinds[name]})" if name in kinds else name


def decontamination_report(project: Project, sample_set: str) -> str:
    """The Export step's one-line decontamination report (plain text: escape it for markdown): what the
    set was checked against, with the counts, or that it was not checked."""
    checks = project.contamination_checks(sample_set)
    if not checks:
        return (
            f"Decontamination: {sample_set} was not checked against any eval set "
            "(Data page, Decontaminate); the dataset card will say so."
        )
    parts = [
        f"{c.source} ({c.items:,} items, {c.n}-grams): {c.flagged:,} of {c.checked:,} contaminated"
        + (f", {c.dropped:,} dropped" if c.dropped else "")
        for c in checks
    ]
    return f"Decontamination: {sample_set} was checked against " + "; ".join(parts) + " (the dataset card lists it)."


def _free_folder(path: Path) -> Path:
    n = 2
    while (candidate := path.with_name(f"{path.name}-{n}")).exists():
        n += 1
    return candidate


def downloads(result: ExportResult) -> list[Download]:
    """The files of an export, ready for download buttons (a folder is zipped)."""
    if result.data.is_dir():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(result.data.rglob("*")):
                if file.is_file():
                    archive.write(file, Path(result.data.name) / file.relative_to(result.data))
        main = Download("Dataset folder (.zip)", result.data.name + ".zip", buffer.getvalue(), MIME[".zip"])
    else:
        main = Download(
            "Data", result.data.name, result.data.read_bytes(), MIME.get(result.data.suffix, "application/octet-stream")
        )
    return [
        main,
        Download("Tree JSON", result.tree.name, result.tree.read_bytes(), MIME[".json"]),
        Download("Dataset card", result.card.name, result.card.read_bytes(), MIME[".md"]),
    ]
