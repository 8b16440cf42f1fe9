"""Reading what batches bring back (OpenAI's output and error files, ``vllm run-batch`` output) into
the project: each reply is kept by its request's cache key (the line's ``custom_id``) for later runs
(:class:`~.replay.BatchReplayLLM`), and logged as a call, with its tokens; each failed request is
logged with its error. Collecting the same file twice changes nothing: a key keeps its first reply,
and a failure is logged once.

Files are streamed in chunks of :data:`CHUNK` lines; each chunk is one transaction (one lookup of
the keys the project holds, one insert of the new replies, one of their call-log rows), so a collect
that stops half way (a malformed or truncated line, a crash) keeps whole chunks, and the rerun takes
in the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..llm.recording import CallRecord
from ..store.batches import KeptOutcomes
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
    #: The line's own ``id`` (the provider's request id: tells a failure apart from the same
    #: request's failure in another batch; None where the line has none).
    line_id: str | None = None


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
    line_id = row["id"] if isinstance(row.get("id"), str) else None
    if row.get("error"):
        return Outcome(custom_id, error=_error_text(row["error"]), line_id=line_id)
    response = row.get("response")
    if not isinstance(response, Mapping):
        return Outcome(custom_id, error="no response", line_id=line_id)
    body = response.get("body") if "body" in response else response
    status = response.get("status_code", 200)
    if status != 200:
        detail = body.get("error", body) if isinstance(body, Mapping) else body
        return Outcome(custom_id, error=f"HTTP {status}: {_error_text(detail)}", line_id=line_id)
    if not isinstance(body, Mapping) or not _has_content(body):
        return Outcome(custom_id, error="not a chat completion with content", line_id=line_id)
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

    def keep_batch_outcomes(
        self, outcomes: Sequence[tuple[str, Mapping[str, Any] | None, CallRecord]], batch_id: str | None
    ) -> KeptOutcomes: ...


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
    (``calls`` says what each is for); log each failure, unless the key has a reply already or the
    same failure was logged before. One transaction per :data:`CHUNK` outcomes: an error raised
    while reading ``outcomes`` (a malformed line) keeps the chunks before it whole."""
    done = Collected()
    for chunk in _chunks(outcomes, CHUNK):
        kept = store.keep_batch_outcomes(
            [(o.custom_id, o.body, _record(o, model, calls.get(o.custom_id), batch_id, run_id)) for o in chunk],
            batch_id,
        )
        done.replies += kept.replies
        done.known += kept.known
        done.failed += len(kept.failed)
        done.errors.update(kept.failed)
    return done


def _chunks(outcomes: Iterable[Outcome], size: int) -> Iterator[list[Outcome]]:
    chunk: list[Outcome] = []
    for outcome in outcomes:
        chunk.append(outcome)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
        request={"batch": batch_id, "custom_id": outcome.custom_id}
        | ({"line": outcome.line_id} if outcome.line_id else {}),
        response=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        error=outcome.error,
        attempts=1,
        attempt_errors=(outcome.error,) if outcome.error else (),
    )
