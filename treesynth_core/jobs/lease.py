"""The project's run lease: one run at a time writes samples or the tree of a project.

Every run that writes samples or the tree with an LLM or data (grow, synth, baseline, fill-gaps,
features, import, route, balance), from the CLI or the app, holds the lease: the one ``running`` row
of the store's ``jobs`` table (:meth:`Project.claim_job <treesynth_core.store.Project.claim_job>`),
naming its kind, pid, host, start and heartbeat. A thread beats every :func:`beat_s` seconds. A
lease with no beat for :data:`~treesynth_core.store.runs.LEASE_STALE_S` seconds
(``$TREESYNTH_LEASE_STALE_S``), or whose process is gone from this host, is taken over: its job reads
``interrupted`` and its run ``killed``. A second run refuses with :class:`RunBusy`, or waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ..errors import Cancelled, ProjectError, TreeSynthError
from ..store import JobRecord, Project
from ..store.runs import lease_stale_s
from ..store.schema import now


class RunBusy(ProjectError):
    """Another run holds the project's run lease."""


def beat_s() -> float:
    """Seconds between heartbeats: often enough that a live lease never looks stale."""
    return min(1.0, lease_stale_s() / 4)


def ago(seconds: float) -> str:
    """``12 s``, ``5 min``, ``2.5 h``: how long ago, in a message."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def refusal(holder: JobRecord) -> str:
    """The one line a run refused by ``holder`` prints."""
    try:
        started = time.time() - datetime.fromisoformat(holder.started).timestamp()
        since = f", started {ago(started)} ago"
    except ValueError:
        since = ""
    where = f"pid {holder.pid} on {holder.host}" if holder.pid else "an older TreeSynth"
    return (
        f"another run is working on this project: {holder.kind}, {where}{since}, last beat "
        f"{ago(time.time() - holder.heartbeat)} ago; wait for it (--wait) or stop it"
    )


class Heartbeat:
    """A job's progress and cancel flag, written to the store on every report and once a beat (so
    the lease stays live), reading the store's cancel request back. ``result`` is the summary line of
    the finished work, set by whoever runs it: the job's outcome (the progress line never is)."""

    def __init__(self, project: Project, job_id: str) -> None:
        self.project, self.job_id = project, job_id
        self.cancel = threading.Event()
        self.progress: dict[str, Any] = {"done": 0, "total": None, "message": ""}
        self.result: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"treesynth-beat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(beat_s()):
            try:
                self._write()
            except TreeSynthError:
                pass  # a busy database only delays the next beat

    def _write(self) -> None:
        self.project.update_job(self.job_id, **self.progress)
        if self.project.job(self.job_id).cancel_requested:
            self.cancel.set()

    def report(self, done: int, total: int, message: str) -> None:
        self.progress.update(done=done, total=total, message=message)
        self._write()


def release(
    project: Project, job_id: str, status: str, error: str | None, message: str, result: str | None = None
) -> None:
    """Record how the job ended, which frees the lease (the heartbeat must have stopped): ``result`` is
    its outcome (the summary of a finished run, what a stopped one kept), ``message`` its last line
    (the outcome when there is one, else the last progress line)."""
    project.update_job(job_id, status=status, error=error, message=result or message, result=result, finished=now())


def claim(
    project: Project,
    kind: str,
    params: dict[str, Any],
    *,
    wait: bool = False,
    poll_s: float = 0.5,
    on_wait: Callable[[JobRecord], None] | None = None,
) -> JobRecord:
    """Take the run lease for a job of ``kind``; raise :class:`RunBusy` while another live run holds it,
    or, with ``wait``, wait for it (calling ``on_wait(holder)`` once first)."""
    told = False
    while True:
        record, created = project.claim_job(kind, params)
        if created:
            return record
        if not wait:
            raise RunBusy(refusal(record))
        if on_wait is not None and not told:
            on_wait(record)
            told = True
        time.sleep(poll_s)


@contextmanager
def run_lease(
    project: Project,
    kind: str,
    params: dict[str, Any],
    *,
    wait: bool = False,
    on_wait: Callable[[JobRecord], None] | None = None,
) -> Iterator[Heartbeat]:
    """Hold the run lease (see :func:`claim`) with a beating heartbeat while the block runs, then
    record how it ended: ``done``, ``cancelled``, ``interrupted`` (Ctrl-C) or ``failed``, with the
    outcome the block set as the heartbeat's ``result``."""
    record = claim(project, kind, params, wait=wait, on_wait=on_wait)
    beat = Heartbeat(project, record.id)
    status, error = "done", None
    try:
        with beat:
            yield beat
    except Cancelled as exc:
        status, beat.result = "cancelled", str(exc)
        raise
    except KeyboardInterrupt:
        status, error = "interrupted", "Ctrl-C"
        raise
    except TreeSynthError as exc:
        status, error = "failed", str(exc)
        raise
    except BaseException as exc:
        status, error = "failed", repr(exc)
        raise
    finally:
        release(
            project, record.id, status, error, beat.progress["message"], beat.result if status != "failed" else None
        )
