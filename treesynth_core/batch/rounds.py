"""A round of batch generation, kept in the project: write its shards (``prepare``), send them
(``submit``), follow them (``status``), bring their replies in (``collect``).

Shards live in ``DIR/batches/<round>/``; the ``batches`` table says where each was sent and how it
stands. A request whose batch failed, expired or was cancelled before it ran has no reply: the next
``prepare`` writes it again (with the next round's calls).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..store.batches import BatchRecord
from .client import BatchClient
from .collect import Collected, collect, read_outcomes
from .files import MAX_BYTES, MAX_LINES, CallInfo, Shard, read_calls, shard_ids, write_shards
from .replay import BatchRequest

#: Where a project keeps its batch files.
BATCH_FOLDER = "batches"
#: The command name the call log's collect runs are recorded under.
COLLECT_COMMAND = "batch-collect"


@dataclass(frozen=True)
class Round:
    """The shards one ``prepare`` wrote."""

    id: str
    folder: Path
    shards: list[Shard]
    #: Requests left out because a batch not yet collected holds them already.
    already_out: int = 0

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.shards)


def new_round_id() -> str:
    return datetime.now(UTC).strftime("r%Y%m%d-%H%M%S-%f")


def write_round(
    project: Any,
    requests: Sequence[BatchRequest],
    *,
    max_lines: int = MAX_LINES,
    max_bytes: int = MAX_BYTES,
    round_id: str | None = None,
    kind: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Round:
    """Shard ``requests`` into ``DIR/batches/<round>/`` and record each shard as a prepared batch,
    and the round's ``kind`` (``synth``) with the options it was prepared with (``params``), which
    ``collect`` uses to turn its replies into samples (:mod:`.fill`).
    Requests that a batch not yet collected holds (prepared, sent, running or done) are left out, so
    preparing twice before collecting never pays for a call twice."""
    round_id = round_id or new_round_id()
    folder = Path(project.path) / BATCH_FOLDER / round_id
    out = out_in_batches(project)
    fresh = [r for r in requests if r.custom_id not in out]
    shards = write_shards(fresh, folder, max_lines=max_lines, max_bytes=max_bytes) if fresh else []
    if shards and kind is not None:
        project.add_batch_round(round_id, kind, params or {})
    for shard in shards:
        project.add_batch(batch_id(round_id, shard.path), round_id, str(shard.path), shard.requests)
    return Round(round_id, folder, shards, len(requests) - len(fresh))


#: Statuses of a batch whose requests are (or may still be) answered: not to be prepared again.
PENDING_STATUSES = frozenset({"prepared", "uploaded", "validating", "in_progress", "finalizing", "completed"})


def out_in_batches(project: Any) -> set[str]:
    """The custom_ids of the requests batches not yet collected hold."""
    ids: set[str] = set()
    for record in project.batches():
        if record.status in PENDING_STATUSES and Path(record.shard).exists():
            ids.update(shard_ids(Path(record.shard)))
    return ids


def batch_id(round_id: str, shard: Path) -> str:
    return f"{round_id}/{shard.stem}"


def submit(project: Any, client: BatchClient, *, only: Iterable[BatchRecord] | None = None) -> list[BatchRecord]:
    """Upload every prepared shard and start a batch on it; returns the batches as they stand now."""
    sent = []
    for record in only if only is not None else project.batches():
        if record.status != "prepared":
            continue
        file_id = client.upload(Path(record.shard))
        project.update_batch(record.id, base_url=client.base_url, input_file_id=file_id, status="uploaded")
        remote = client.create(file_id)
        project.update_batch(record.id, remote_id=remote.id, status=remote.status, counts=dict(remote.counts))
        sent.append(record.id)
    return [b for b in project.batches() if b.id in sent]


def refresh(project: Any, client: BatchClient) -> list[BatchRecord]:
    """Ask the provider how each sent, unfinished batch stands; returns every batch."""
    for record in project.batches():
        if record.remote_id and record.status not in {"collected", "completed", "failed", "expired", "cancelled"}:
            remote = client.retrieve(record.remote_id)
            counts = {**record.counts, **remote.counts}
            if remote.errors:
                counts["errors"] = remote.errors
            project.update_batch(
                record.id,
                status=remote.status,
                output_file_id=remote.output_file_id,
                error_file_id=remote.error_file_id,
                counts=counts,
            )
    return project.batches()


@dataclass
class CollectReport:
    """What a collect took in, over the batches (or files) it read."""

    collected: Collected
    batches: list[str]
    waiting: list[str]
    #: Batches that ended ``failed`` at the provider: id -> the provider's errors (the whole file was refused).
    failed_batches: dict[str, str] = field(default_factory=dict)
    #: The rounds whose batches this collect brought in.
    rounds: list[str] = field(default_factory=list)


def collect_remote(project: Any, client: BatchClient, model: str) -> CollectReport:
    """Download the output and error files of each finished, uncollected batch (what a failed or
    expired batch got done is kept too) and bring them into the project."""
    refresh(project, client)
    total, done, waiting, failed = Collected(), [], [], {}
    run_id = project.start_run(COLLECT_COMMAND, {"from": client.base_url})
    try:
        for record in project.batches():
            if record.status == "collected" or not record.remote_id:
                continue
            if record.status not in {"completed", "failed", "expired", "cancelled"}:
                waiting.append(record.id)
                continue
            shard = Path(record.shard)
            calls = read_calls(shard)
            got = Collected()
            for kind, file_id in (("output", record.output_file_id), ("errors", record.error_file_id)):
                if file_id:
                    path = client.download(file_id, shard.with_name(f"{shard.stem}.{kind}.jsonl"))
                    got.add(
                        collect(
                            project, read_outcomes(path), model=model, calls=calls, batch_id=record.id, run_id=run_id
                        )
                    )
            total.add(got)
            if record.status == "failed":
                failed[record.id] = str(record.counts.get("errors") or "the provider gave no reason")
            counts = {**record.counts, "replies": got.replies + got.known, "failed_requests": got.failed}
            project.update_batch(record.id, status="collected", counts=counts)
            done.append(record.id)
    except BaseException as exc:
        project.finish_run(run_id, "failed", str(exc))
        raise
    project.finish_run(run_id, "ok")
    rounds = [r.round for r in project.batches() if r.id in set(done)]
    return CollectReport(total, done, waiting, failed, list(dict.fromkeys(rounds)))


def collect_files(project: Any, paths: Sequence[Path], model: str) -> CollectReport:
    """Bring in output files written elsewhere (``vllm run-batch -o OUT``, or downloaded by hand).
    A prepared shard the files answered (any of its requests) is marked ``collected``: ``submit``
    leaves it alone, and the next ``prepare`` writes again what it left unanswered."""
    calls: dict[str, CallInfo] = {}
    for record in project.batches():
        if Path(record.shard).exists():
            calls.update(read_calls(Path(record.shard)))
    total = Collected()
    run_id = project.start_run(COLLECT_COMMAND, {"from": [str(p) for p in paths]})
    try:
        for path in paths:
            total.add(collect(project, read_outcomes(path), model=model, calls=calls, batch_id=None, run_id=run_id))
    except BaseException as exc:
        project.finish_run(run_id, "failed", str(exc))
        raise
    project.finish_run(run_id, "ok")
    rounds = []
    for record in project.batches():  # shards these files answered: ran elsewhere, now collected
        if record.status == "prepared" and Path(record.shard).exists():
            ids = set(shard_ids(Path(record.shard)))
            answered = project.batch_reply_keys(ids)
            if answered:
                counts = {"replies": len(answered), "missing": len(ids) - len(answered)}
                project.update_batch(record.id, status="collected", counts=counts)
                rounds.append(record.round)
    return CollectReport(total, [str(p) for p in paths], [], rounds=list(dict.fromkeys(rounds)))


def progress_text(record: BatchRecord) -> str:
    """The provider's request counts of a running batch, or what collect took from a finished one
    (empty when there are none); starts with two spaces."""
    counts = record.counts
    if "replies" in counts:
        failed = counts.get("failed_requests") or 0
        missing = counts.get("missing") or 0
        return (
            f"  {counts['replies']} replies"
            + (f", {failed} failed" if failed else "")
            + (f", {missing} missing" if missing else "")
        )
    if counts.get("total"):
        return f"  {counts.get('completed', 0)}/{counts['total']} done, {counts.get('failed', 0)} failed"
    return ""
