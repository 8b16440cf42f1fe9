"""What a growth run came to, in words a person can act on: "added N nodes", or "added nothing,
because ..." with the reason read from the tree (a failed expansion's note, a node kept as a leaf, or
no node ready to grow), and which attempt in a row it was.

Pure: it reads a job's record, the edit log and the tree, and decides; the app shows the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ..store.history import EditRecord
from ..store.runs import JobRecord
from ..tree import model as T
from .grow import FAILED_NOTE

#: Said before growing on the embedded default model.
EMBEDDED_NOTE = (
    "The embedded 135M model is a smoke test: it rarely proposes a usable criterion, so growth often adds "
    "nothing. Split a node by hand (its Criterion tab), open an example tree, or use a local model "
    "(Project page)."
)
NOTHING_READY = (
    "no node was ready to grow: only approved leaves above the depth limit grow (unless auto-approve is on), "
    "and locked ones never do"
)
#: What a failed expansion's note ends with (see :meth:`~treesynth_core.generate.grow.Split.failure`).
_RETRY_TAIL = "; grow again to retry"

Status = Literal["added", "nothing", "stopped", "failed"]


@dataclass(frozen=True)
class GrowthResult:
    """How one growth job ended, for the banner after it."""

    status: Status
    #: Nodes the run added to the tree.
    added: int
    #: Nodes the run tried to expand.
    tried: int
    #: Why nothing (or not everything) was added; the error of a failed run; "" otherwise.
    reason: str
    #: Which growth in a row this is that added nothing (1 for the first; 1 when nodes were added).
    attempt: int = 1
    #: The node to split by hand instead: the first one the run tried that has no children (None: the root).
    node_id: str | None = None

    @property
    def empty(self) -> bool:
        """A run that ended without adding a node (and without an error)."""
        return self.status in ("nothing", "stopped") and self.added == 0

    def headline(self) -> str:
        """One line: ``Growth added 6 nodes.`` / ``Growth added nothing (attempt 2): because ...``."""
        if self.status == "failed":
            return f"Growth failed: {self.reason}"
        if self.added:
            nodes = f"{self.added} node{'' if self.added == 1 else 's'}"
            stopped = " before it was stopped" if self.status == "stopped" else ""
            return f"Growth added {nodes}{stopped}." + (
                f" Some nodes did not grow: {self.reason}." if self.reason else ""
            )
        attempt = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        return f"Growth added nothing{attempt}: {self.reason}."


def _in_window(edit: EditRecord, job: JobRecord) -> bool:
    return edit.ts >= job.started and (job.finished is None or edit.ts <= job.finished)


def _reason_from_notes(tree: T.Tree, node_ids: Sequence[str]) -> str:
    """Why the expanded nodes got no children, from their notes (the first failure, else the first note)."""
    nodes = [tree.nodes[i] for i in node_ids if i in tree.nodes and not tree.children(i)]
    failed = [n for n in nodes if n.note.startswith(FAILED_NOTE)]
    if failed:
        problem = failed[0].note.removeprefix(FAILED_NOTE).removesuffix(_RETRY_TAIL)
        return problem if len(failed) == 1 else f"{problem} (and likewise for {len(failed) - 1} more nodes)"
    noted = [n for n in nodes if n.note]
    if noted:
        return noted[0].note
    return f"the model proposed no split for {len(nodes)} node{'' if len(nodes) == 1 else 's'}" if nodes else ""


def growth_result(job: JobRecord, edits: Sequence[EditRecord], tree: T.Tree, *, attempt: int = 1) -> GrowthResult:
    """What ``job`` (a finished grow job) did, from the ``grow`` edits in force it made (the edit log:
    those recorded while it ran) and the tree now. A job that failed because every expansion it tried
    failed (no usable reply) added nothing, for the reason the failed nodes' notes give; one that failed
    before it reached a node is ``failed``, with its error."""
    failed = job.status == "failed"
    if failed and not job.total:  # it failed before it reached a node (no key, no endpoint)
        return GrowthResult("failed", 0, 0, job.error or job.message or "unknown error", attempt)
    mine = [e for e in edits if e.kind == "grow" and not e.undone and _in_window(e, job)]
    node_ids = [str(e.args.get("node_id", "")) for e in mine]
    if failed and not mine:  # its expansions failed as before, leaving the notes as they were
        node_ids = [n.id for n in tree.nodes.values() if n.note.startswith(FAILED_NOTE) and not tree.children(n.id)]
    added = sum(
        1
        for e, i in zip(mine, node_ids, strict=False)
        if e.n_changes and i in tree.nodes
        for child in tree.children(i)
        if child.provenance.source == "llm"
    )
    stopped = job.status in ("cancelled", "interrupted")
    reason = _reason_from_notes(tree, node_ids) or (job.error or "" if failed else "")
    if not node_ids and not failed:
        reason = "it was stopped before any node grew" if stopped else NOTHING_READY
    if not added and not reason:
        reason = "no node was split"
    status: Status = "stopped" if stopped else ("added" if added else "nothing")
    bare = next((i for i in node_ids if i in tree.nodes and not tree.children(i)), None)
    return GrowthResult(status, added, len(mine) or job.done, reason, 1 if added else attempt, bare)


def latest_growth(jobs: Sequence[JobRecord], edits: Sequence[EditRecord], tree: T.Tree) -> GrowthResult | None:
    """The result of the newest finished grow job of ``jobs`` (newest first), counting the attempts in a
    row, ending with it, that added nothing; None when there is none, the newest still runs, or the tree
    was edited since it ended (its result is then out of date)."""
    grows = [job for job in jobs if job.kind == "grow"]
    if not grows or grows[0].status == "running":
        return None
    ended = grows[0].finished
    if ended is None or any(edit.ts > ended for edit in edits):
        return None
    results = [growth_result(job, edits, tree) for job in grows if job.status != "running"]
    attempt = 0
    for result in results:
        if not result.empty:
            break
        attempt += 1
    return replace(results[0], attempt=max(1, attempt) if results[0].empty else 1)
