"""One logged run of LLM work (grow, synth, ...): the recording LLM stack, the run record, and how
the run ended. Shared by the CLI and background jobs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from ..errors import Cancelled, ParseError, TreeSynthError
from ..generate.shortfall import left_short, shortfall_of
from ..llm.base import LLM
from ..llm.recording import CallStore, recording
from ..llm.settings import BackendSettings
from ..llm.stop import stopping
from ..store import RunStats

R = TypeVar("R")
LLMFactory = Callable[[BackendSettings], LLM]


class RunStore(CallStore, Protocol):
    def start_run(self, command: str, params: dict[str, Any] | None = None, *, job_id: str | None = None) -> str: ...

    def finish_run(self, run_id: str, status: str = "ok", error: str | None = None) -> None: ...

    def stats(self, run_id: str | None = None) -> RunStats: ...

    def write_behind(self) -> AbstractContextManager[object]: ...


def default_factory(settings: BackendSettings) -> LLM:
    from ..llm import make_llm

    return make_llm(settings)


def run_llm_work(
    store: RunStore,
    command: str,
    params: dict[str, Any],
    settings: BackendSettings,
    work: Callable[[LLM, threading.Event], Coroutine[Any, Any, R]],
    *,
    cancel: threading.Event | None = None,
    max_calls: int | None = None,
    llm_factory: LLMFactory | None = None,
    job_id: str | None = None,
) -> tuple[R, RunStats]:
    """Run ``work(llm, cancel)`` on a fresh event loop with ``CachedLLM(LoggedLLM(backend))``,
    recorded as one run of ``command`` under the run lease ``job_id`` holds (see :mod:`.lease`);
    ``max_calls`` caps the calls sent to the backend (replies collected batches brought back are
    served beside it and not counted: :func:`~treesynth_core.batch.replay.batch_first`). ``cancel`` is
    the run's Stop: no call is sent after it is set, and the calls in flight are abandoned (the
    event is the stop event of the run's loop: :mod:`~treesynth_core.llm.stop`).
    Returns the work's result and the run's call stats; the run's status says how it ended (ok,
    partial, failed, cancelled, interrupted; ``killed`` when its process died and the lease went
    stale). A run that made nothing it was asked for because every reply was unusable (its report's
    ``shortfall()``, see :mod:`~treesynth_core.generate.shortfall`) failed: it raises
    :class:`ParseError` saying why; one that made part of it is ``partial``, with the shortfall as its
    error. The run's call-log and cache rows are written behind it (see
    :mod:`~treesynth_core.store.write_behind`), all of them committed before its status is."""
    run_id = store.start_run(command, params, job_id=job_id)
    cancel = cancel or threading.Event()
    factory = llm_factory or default_factory

    async def main() -> R:
        backend = factory(settings)
        lookup = getattr(store, "batch_reply", None)  # replies collected batches brought back
        any_replies = getattr(store, "has_batch_replies", None)
        llm: LLM
        if lookup is not None and any_replies is not None and any_replies():
            from ..batch.replay import batch_first  # they were paid for: not counted in max_calls

            llm = batch_first(backend, lookup, store, run_id, max_calls=max_calls, cancel=cancel)
        else:
            llm = recording(backend, store, run_id, max_calls=max_calls, cancel=cancel)
        try:
            with stopping(cancel):  # the backends stop the call in flight when it is set (see llm.stop)
                return await work(llm, cancel)
        finally:
            await llm.aclose()

    try:
        with store.write_behind():  # leaving it commits every queued row, however the run ended
            result = asyncio.run(main())
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted", "Ctrl-C")
        raise
    except Cancelled as exc:
        store.finish_run(run_id, "cancelled", str(exc))
        raise
    except TreeSynthError as exc:
        store.finish_run(run_id, "failed", str(exc))
        raise
    except BaseException as exc:
        store.finish_run(run_id, "failed", repr(exc))
        raise
    short = shortfall_of(result)
    if short is not None and short.total:
        store.finish_run(run_id, "failed", short.message())
        raise ParseError(short.message())
    store.finish_run(run_id, "partial" if left_short(result) else "ok", None if short is None else short.message())
    return result, store.stats(run_id)
