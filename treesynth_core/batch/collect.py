"""Reading what batches bring back (OpenAI's output and error files, ``vllm run-batch`` output) into
the project: each reply is kept by its request's cache key (the line's ``custom_id``) for later runs
(:class:`~.replay.BatchReplayLLM`), and logged as a call, with its tokens; each failed request is
logged with its error. Collecting the same file twice changes nothing: a key keeps its first reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..llm.recording import CallRecord
from .files import CallInfo, read_jsonl

#: Replies kept per transaction while collecting.
CHUNK = 1000


@dataclass(frozen=True)
class Outcome:
    """One line of an output or error file: the request's key and its reply (a chat completion
    with content) or why it failed."""

    custom_id: str
    body: Mapping[str, Any] | None = None
    error: str | None = None


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
        text = " ".join(str(x) for x in (code, message) if x)
        return text or json.dumps(error)[:300]
    return str(error)[:300]


def outcome_of(row: Mapping[str, Any]) -> Outcome | None:
    """The outcome an output or error line records (None for a line without ``custom_id``).

    Both OpenAI's and vLLM's lines look like ``{"id", "custom_id", "response": {"status_code",
    "request_id", "body"}, "error"}``; a ``response`` that is itself the chat completion (older
    vLLM) is read too."""
    custom_id = row.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None
    if row.get("error"):
        return Outcome(custom_id, error=_error_text(row["error"]))
    response = row.get("response")
    if not isinstance(response, Mapping):
        return Outcome(custom_id, error="no response")
    body = response.get("body") if "body" in response else response
    status = response.get("status_code", 200)
    if status != 200:
        detail = body.get("error", body) if isinstance(body, Mapping) else body
        return Outcome(custom_id, error=f"HTTP {status}: {_error_text(detail)}")
    if not isinstance(body, Mapping) or not _has_content(body):
        return Outcome(custom_id, error="not a chat completion with content")
    return Outcome(custom_id, body=body)


def _has_content(body: Mapping[str, Any]) -> bool:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return False
    message = choices[0].get("message")
    return isinstance(message, Mapping) and isinstance(message.get("content"), str)


def read_outcomes(path: Path) -> Iterator[Outcome]:
    """The outcomes of an output or error file, streamed."""
    for row in read_jsonl(path):
        outcome = outcome_of(row)
        if outcome is not None:
            yield outcome


class ReplyStore(Protocol):
    """What collecting needs from a project."""

    def put_batch_replies(self, replies: Iterable[tuple[str, Mapping[str, Any]]], batch_id: str | None) -> int: ...

    def batch_reply(self, key: str) -> dict[str, Any] | None: ...

    def log_call(self, record: CallRecord) -> str: ...


@dataclass
class Collected:
    """What one collect took in: replies new to the project, replies it held already, failures."""

    replies: int = 0
    known: int = 0
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, other: Collected) -> None:
        self.replies += other.replies
        self.known += other.known
        self.failed += other.failed
        self.errors.update(other.errors)


def collect(
    store: ReplyStore,
    outcomes: Iterable[Outcome],
    *,
    model: str,
    calls: Mapping[str, CallInfo],
    batch_id: str | None,
    run_id: str | None,
) -> Collected:
    """Keep the replies of ``outcomes`` and log each new one as a call of ``model`` under ``run_id``
    (``calls`` says what each is for); log each failure, unless the key has a reply already."""
    done = Collected()
    pending: list[Outcome] = []

    def flush() -> None:
        fresh = [o for o in pending if store.batch_reply(o.custom_id) is None]
        added = store.put_batch_replies(((o.custom_id, o.body or {}) for o in fresh), batch_id)
        done.replies += added
        done.known += len(pending) - added
        for outcome in fresh:
            store.log_call(_record(outcome, model, calls.get(outcome.custom_id), batch_id, run_id))
        pending.clear()

    for outcome in outcomes:
        if outcome.body is not None:
            pending.append(outcome)
            if len(pending) >= CHUNK:
                flush()
        elif store.batch_reply(outcome.custom_id) is None:
            done.failed += 1
            done.errors[outcome.custom_id] = outcome.error or "failed"
            store.log_call(_record(outcome, model, calls.get(outcome.custom_id), batch_id, run_id))
    flush()
    return done


def _record(
    outcome: Outcome, model: str, info: CallInfo | None, batch_id: str | None, run_id: str | None
) -> CallRecord:
    info = info or CallInfo()
    body = outcome.body or {}
    found = body.get("usage")
    usage: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    text = body["choices"][0]["message"]["content"] if outcome.body is not None else None
    return CallRecord(
        run_id=run_id,
        backend="openai",
        model=model,
        purpose=info.purpose,
        node_id=info.node_id,
        cache_key=outcome.custom_id,
        request={"batch": batch_id, "custom_id": outcome.custom_id},
        response=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        error=outcome.error,
        attempts=1,
        attempt_errors=(outcome.error,) if outcome.error else (),
    )
