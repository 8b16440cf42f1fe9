"""Reading what an OpenAI-compatible server sends back: a chat completion (or what the body is when
it is not one), the server's own message in an error reply, and whether that error says the server
does not take the ``response_format`` sent (so the backend falls back to the next format of its
ladder, :data:`~.openai_request.FORMAT_LADDERS`).

Every text quoted from a reply is cut to one short line, with the API key (``redact``) and anything
that looks like a credential blanked out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .base import ChatResult

if TYPE_CHECKING:
    from .http_post import HttpReply

MAX_SERVER_MESSAGE_CHARS = 300
#: How much of a reply that is not a chat completion an error quotes.
BODY_SNIPPET_CHARS = 100
#: Things in a quoted reply that look like credentials (besides our own key, always blanked).
_SECRET_LIKE = re.compile(r"(?i)(bearer\s+|sk-|api[_-]?key[\"':= ]+)[A-Za-z0-9._~+/=-]{6,}")

#: Words in an error reply that say "I don't support this response_format".
_FORMAT_WORDS = ("response_format", "json_schema", "json_object")
_UNSUPPORTED_WORDS = ("unsupported", "not supported", "not implemented")

Redact = Callable[[str], str]


class BadReply(Exception):
    """A reply that is not a usable chat completion: a body that is not JSON, an HTML page (a proxy or
    a captive portal), no choices, no message content. Retried like a 5xx: such faults pass."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class NoChoices(ValueError):
    """A JSON object that is not a chat completion: it has no choices."""


class NoContent(ValueError):
    """A chat completion whose first choice has no message content."""

    def __init__(self, finish_reason: Any) -> None:
        super().__init__(f"no message content (finish_reason={finish_reason!r})")
        self.finish_reason = finish_reason


def chat_result(data: Mapping[str, Any], model: str, latency: float = 0.0) -> ChatResult:
    """Read a ``chat.completion`` JSON object (kept as plain dicts: cheaper than SDK models): the
    first choice's text, the model that wrote it (``model`` when the reply does not say), token
    counts. Raises ``ValueError`` when it has no choices or no message content. Batch output files
    (:mod:`treesynth_core.batch`) are read with it too."""
    choices = data.get("choices") or []
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise NoChoices("no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise NoContent(choice.get("finish_reason"))
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return ChatResult(
        text=text,
        model=str(data.get("model") or model),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency,
        finish_reason=choice.get("finish_reason"),
    )


def decode(reply: HttpReply, redact: Redact) -> Any:
    """A reply's JSON (as the SDK read it: a body labelled JSON is parsed, any other is text);
    :class:`BadReply` when the body is not text, or is labelled JSON and is not."""
    try:
        if not reply.content_type.endswith("json"):
            return reply.body.decode("utf-8")
        return json.loads(reply.body)
    except UnicodeDecodeError:
        raise BadReply("a body that is not text") from None
    except json.JSONDecodeError as exc:
        raise BadReply(quote(exc.doc, redact)) from None


def completion(data: Any, model: str, latency: float, redact: Redact) -> ChatResult:
    """The chat completion a decoded reply holds (:func:`chat_result`), or :class:`BadReply` saying
    what it is instead."""
    if isinstance(data, str):
        raise BadReply(quote(data, redact))
    if not isinstance(data, dict):
        raise BadReply(f"JSON that is not a chat completion: {quote(json.dumps(data), redact, kind=None)}")
    try:
        return chat_result(data, model, latency)
    except NoChoices:
        raise BadReply(
            f"a reply with no choices for model {model!r}: {quote(json.dumps(data), redact, kind=None)}"
        ) from None
    except NoContent as exc:
        raise BadReply(f"a reply without content for model {model!r} (finish_reason={exc.finish_reason!r})") from None


def quote(body: str, redact: Redact, kind: str | None = "") -> str:
    """A body that is not a chat completion, for an error: what it looks like (an HTML page, not
    JSON, empty) and its first :data:`BODY_SNIPPET_CHARS` characters on one line, secrets blanked.
    ``kind=None`` quotes without saying what it is."""
    flat = " ".join(body.split())
    if not flat:
        return "an empty body"
    if kind == "":
        kind = "an HTML page" if flat.startswith("<") and "html" in flat[:300].lower() else "a body that is not JSON"
    cut = _SECRET_LIKE.sub(r"\1***", redact(flat))
    quoted = repr(cut[:BODY_SNIPPET_CHARS]) + ("..." if len(cut) > BODY_SNIPPET_CHARS else "")
    return quoted if kind is None else f"{kind}: {quoted}"


def server_message(exc: Any, redact: Redact) -> str:
    """The server's own error message of an ``openai.APIStatusError``, shortened, with the key
    blanked out should it echo it."""
    message = _message_of(exc.body)
    return _one_line(exc.response.text or exc.message if message is None else message, redact)


def reply_message(reply: HttpReply, redact: Redact) -> str:
    """The server's own message in an error reply, read as the ``openai`` SDK reads it (the JSON
    body's ``error``, its ``message``, ``detail`` or ``error``), shortened, the key blanked out."""
    text = reply.text
    body: Any = text.strip()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    data = body.get("error", body) if isinstance(body, Mapping) else body
    message = _message_of(data)
    return _one_line(text or f"Error code: {reply.status}" if message is None else message, redact)


def _message_of(body: Any) -> Any:
    """What an error body says (None when it says nothing)."""
    message = body
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail") or body.get("error") or body
    return None if message == "" else message


def _one_line(message: Any, redact: Redact) -> str:
    return " ".join(redact(str(message)).split())[:MAX_SERVER_MESSAGE_CHARS]  # one line: an HTML page has many


def rejects_format(status: int, message: str) -> bool:
    """Whether an error reply says the server does not support the response_format we sent.

    4xx replies count when they mention the format or say "unsupported"; 5xx replies only when they
    name the format (llama.cpp's Python server reports its request validation errors as HTTP 500).
    """
    if status in (401, 403, 408, 429):
        return False
    text = message.lower()
    names_format = any(word in text for word in _FORMAT_WORDS)
    if 400 <= status < 500:
        return names_format or any(word in text for word in _UNSUPPORTED_WORDS)
    return status >= 500 and names_format
