"""Decontaminating a sample set of a project: read the eval sets, scan the samples, record the result.

An eval set is a dataset file (read like an import: the suggested instruction/input/output columns, or
one ``field``), a shipped example (``example:humaneval``) or another sample set of the project
(``set:NAME``, or a bare name that is not a file). Every eval set is read and indexed before the
samples are scanned and anything is written, so a bad one fails first with one clear line and leaves
the project as it was. The matching is :mod:`treesynth_core.data.decontam`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError
from ..store.contamination import Check, Hit
from .decontam import EvalIndex, EvalItem, scan
from .decontam_options import DecontamOptions, check_n
from .examples import PREFIX, resolve

if TYPE_CHECKING:
    from ..store.project import Project

SET_PREFIX = "set:"
#: How many contaminated samples a report shows.
EXAMPLES = 5


@dataclass(frozen=True)
class SourceReport:
    source: str
    items: int
    skipped_items: int
    flagged: int


@dataclass(frozen=True)
class DecontamReport:
    """``checked`` samples of ``sample_set``; ``flagged`` of them overlap at least one eval set (each counted
    once), ``dropped`` were deleted; ``examples`` shows the first few hits."""

    sample_set: str
    n: int
    short_n: int
    checked: int
    flagged: int
    dropped: int
    sources: list[SourceReport]
    examples: list[Hit] = field(default_factory=list)


def _set_items(project: Project, name: str) -> Iterator[EvalItem]:
    for sample_id, instruction, response in project.sample_texts(name):
        yield EvalItem(f"sample {sample_id}", f"{instruction}\n{response or ''}")


def _file_items(path: Path, field_name: str | None, mapping: dict[str, str] | None, label: str) -> Iterator[EvalItem]:
    from .ingest import ColumnMap, preview, read_samples

    if field_name:
        cmap = ColumnMap(instruction=field_name)
    elif mapping:
        cmap = ColumnMap(**mapping)
    else:
        cmap = preview(path).suggested
        if not (cmap.instruction or cmap.messages):
            raise DataError(f"no column of {label} looks like text to check against: pass --field COLUMN")
    for sample in read_samples(path, cmap, sample_set="eval", skip_empty=True):
        yield EvalItem(sample.key.replace(":", " "), f"{sample.instruction}\n{sample.response or ''}")


def eval_source(project: Project, spec: str, *, field_name: str | None = None) -> tuple[str, Iterator[EvalItem]]:
    """The label and the items of one eval set named on the command line (see the module docstring)."""
    if spec.startswith(PREFIX):
        path, example = resolve(spec)
        assert example is not None
        return spec, _file_items(path, field_name, example.mapping, spec)
    sets = project.sample_sets()
    name = spec[len(SET_PREFIX) :] if spec.startswith(SET_PREFIX) else None
    if name is None and not Path(spec).expanduser().exists() and spec in sets:
        name = spec
    if name is not None:
        if not sets.get(name):
            raise DataError(f"no sample set {name!r} to check against; sets: {_sets_line(sets)}")
        return SET_PREFIX + name, _set_items(project, name)
    if not Path(spec).expanduser().exists():
        raise DataError(
            f"no such file or sample set: {spec} (eval sets are files, example:NAME or set:NAME; "
            f"sets: {_sets_line(sets)})"
        )
    return spec, _file_items(Path(spec).expanduser(), field_name, None, spec)


def _sets_line(sets: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in sets.items()) or "none"


def build_indexes(project: Project, options: DecontamOptions) -> list[EvalIndex]:
    """Read and index every eval set; a :class:`DataError` for a missing, unreadable or empty one."""
    check_n(options.n)
    if not options.against:
        raise DataError("name at least one eval set to check against (--against FILE|example:NAME|SET)")
    indexes = []
    for spec in dict.fromkeys(options.against):
        source, items = eval_source(project, spec, field_name=options.field)
        if source == SET_PREFIX + options.sample_set:
            raise DataError(f"cannot check the set {options.sample_set!r} against itself")
        index = EvalIndex(source, items, n=options.n)
        if not index.items:
            too_short = f" ({index.skipped} items, all under 3 words)" if index.skipped else ""
            raise DataError(f"the eval set {source} has nothing to check against{too_short}")
        indexes.append(index)
    return indexes


def decontaminate(
    project: Project, options: DecontamOptions, *, progress: Callable[[int, int, str], None] | None = None
) -> DecontamReport:
    """Check every sample of ``options.sample_set`` against each eval set and record the result in the
    project (replacing earlier checks against the same eval sets); with ``options.drop``, delete the
    contaminated samples in the same transaction. ``progress(done, total, note)`` follows the scan."""
    total = project.sample_sets().get(options.sample_set, 0)
    if not total:
        raise DataError(f"no samples in the set {options.sample_set!r}; sets: {_sets_line(project.sample_sets())}")
    indexes = build_indexes(project, options)
    texts = ((sample_id, f"{ins}\n{resp or ''}") for sample_id, ins, resp in project.sample_texts(options.sample_set))

    def on_chunk(done: int) -> None:
        if progress is not None:
            progress(done, total, f"{done:,} of {total:,} samples")

    result = scan(indexes, texts, progress=on_chunk)
    flagged_ids = {hit.sample_id for hit in result.hits}
    checks = [
        Check(
            options.sample_set,
            index.source,
            index.n,
            index.items,
            index.skipped,
            result.checked,
            result.flagged(index.source),
            result.flagged(index.source) if options.drop else 0,
            _now(),
        )
        for index in indexes
    ]
    dropped = project.record_contamination(checks, result.hits, drop=options.drop)
    examples = sorted(result.hits, key=lambda h: h.sample_id)[:EXAMPLES]
    return DecontamReport(
        sample_set=options.sample_set,
        n=options.n,
        short_n=indexes[0].short_n,
        checked=result.checked,
        flagged=len(flagged_ids),
        dropped=dropped,
        sources=[SourceReport(c.source, c.items, c.skipped_items, c.flagged) for c in checks],
        examples=examples,
    )


def _now() -> str:
    from ..store.schema import now

    return now()
