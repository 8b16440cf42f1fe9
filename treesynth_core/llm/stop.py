"""Stop reaching the LLM call in flight: the run's cancel event, found by the backends without a
parameter through every layer.

A run of LLM work (:func:`~treesynth_core.jobs.runs.run_llm_work`) sets its cancel
:class:`threading.Event` (the app's Stop, a ``cancel_job`` from another process) as the *stop event*
of its event loop's context with :func:`stopping`; every task and worker thread started from there
sees it through :func:`stop_event`. The backends watch it while a call is out:

* the ``openai`` backend races the whole call (the request, the wait for a connection, the retry
  backoff) against it (:func:`unless_stopped`): the request is aborted when Stop comes;
* the embedded backend checks it between generated tokens (:mod:`.embedded_llama`).

A call stopped this way raises :class:`~treesynth_core.errors.Cancelled` with :data:`STOPPED_IN_FLIGHT`:
never a cut-off reply passed off as a real one, so nothing of it is cached, and the call log records
it as ``cancelled`` (:class:`~treesynth_core.llm.recording.LoggedLLM`). Between calls the run's
:class:`~treesynth_core.llm.recording.CallBudget` sends no further call, as before.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from ..errors import Cancelled

R = TypeVar("R")

#: What a call stopped while it was out says (the job's outcome reads what follows ``stopped: ``).
STOPPED_IN_FLIGHT = "stopped: the LLM call in flight was abandoned; what finished before it is saved"
#: How often a waiting event loop looks at the stop event (a :class:`threading.Event` cannot wake it).
POLL_S = 0.05

_STOP: ContextVar[threading.Event | None] = ContextVar("treesynth_stop", default=None)
#: Per event loop and stop event: the one task that finishes once the event is set (see :func:`wait_for_stop`).
_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


def stop_event() -> threading.Event | None:
    """The stop event of the run this code runs in (None outside a run)."""
    return _STOP.get()


def stop_requested() -> bool:
    """Whether the run this code runs in was asked to stop."""
    event = _STOP.get()
    return event is not None and event.is_set()


@contextmanager
def stopping(event: threading.Event | None) -> Iterator[threading.Event | None]:
    """Make ``event`` the stop event of this context (and of the tasks and threads started from it)
    while the block runs."""
    token = _STOP.set(event)
    try:
        yield event
    finally:
        _STOP.reset(token)


def stopped() -> Cancelled:
    """The error a call stopped while it was out raises."""
    return Cancelled(STOPPED_IN_FLIGHT)


async def wait_for_stop(event: threading.Event) -> None:
    """Return once ``event`` is set. One watcher task per event loop and event looks at it every
    :data:`POLL_S` seconds, however many calls wait on it; cancelling a waiter leaves it running."""
    loop = asyncio.get_running_loop()
    watchers = _watchers.setdefault(loop, {})
    watcher = watchers.get(id(event))
    if watcher is None or (watcher.done() and not event.is_set()):
        watcher = watchers[id(event)] = loop.create_task(_watch(event), name="treesynth-stop-watch")
    await asyncio.shield(watcher)


async def _watch(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(POLL_S)


async def unless_stopped(call: Awaitable[R]) -> R:
    """Await ``call``, unless the run's stop event is set first: then cancel it (an HTTP request is
    aborted) and raise :func:`stopped`. Outside a run, just await it."""
    event = _STOP.get()
    if event is None:
        return await call
    if event.is_set():
        if asyncio.iscoroutine(call):
            call.close()  # never started: no "never awaited" warning
        raise stopped()
    work = asyncio.ensure_future(call)
    stop = asyncio.ensure_future(wait_for_stop(event))
    try:
        await asyncio.wait((work, stop), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this task was cancelled (Ctrl-C, another call failed): cancel both
        work.cancel()
        stop.cancel()
        await asyncio.gather(work, stop, return_exceptions=True)
        raise
    if work.done():
        stop.cancel()
        return work.result()
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    raise stopped()
