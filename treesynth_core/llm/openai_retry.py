"""What a failed OpenAI-compatible request means and whether to try it again: the backoff between
tries (exponential, full jitter, the server's ``Retry-After`` honoured), the statuses worth retrying
(429, 5xx) and those that end a call (401/403: the key; other 4xx), and why a connection failed.

Shared by the chat backend (:mod:`.openai_compat`), the embeddings endpoint
(:mod:`treesynth_core.coverage.features.embeddings`) and the Files/Batches client
(:mod:`treesynth_core.batch.client`), so each says the same thing about the same failure.
"""

from __future__ import annotations

import email.utils
import errno
import random
import time
from collections.abc import Mapping

from ..errors import AuthError, EndpointError
from ..progress import plural

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
RETRY_AFTER_CAP_S = 60.0


def backoff(attempt: int, rng: random.Random) -> float:
    """Seconds to wait after failed try ``attempt`` (0 for the first): exponential backoff with full
    jitter, uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``Retry-After``), capped; else None."""
    milliseconds = _to_float(headers.get("retry-after-ms"))
    if milliseconds is not None:
        seconds: float | None = milliseconds / 1000.0
    else:
        seconds = _retry_after_seconds(headers.get("retry-after"))
    if seconds is None or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_CAP_S)


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` is either a number of seconds or an HTTP date."""
    if not value:
        return None
    number = _to_float(value)
    if number is not None:
        return number
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def _to_float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def raise_if_refused(status: int, message: str, base_url: str, key_env: str) -> None:
    """HTTP 401/403: the key is wrong or missing; never worth retrying."""
    if status in (401, 403):
        raise AuthError(
            f"{base_url} refused the API key (HTTP {status}): {message}. Check the key in ${key_env}."
        ) from None


def raise_unless_retryable(status: int, message: str, where: str, attempt: int, attempts: int) -> None:
    """Return when a status is worth retrying (429, 5xx) and attempts are left; else raise
    :class:`EndpointError` saying what the server answered."""
    if not (status == 429 or status >= 500):
        raise EndpointError(f"{where} answered HTTP {status}: {message}") from None
    if attempt + 1 >= attempts:
        raise EndpointError(
            f"{where} kept failing after {plural(attempts, 'attempt')}: HTTP {status}: {message}"
        ) from None


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed: "connection refused", "timeout", or the innermost error's own words.

    The outer exception's type is not to be trusted: the SDK's aiohttp transport reports a refused
    connection and a dropped one as ``ConnectTimeout``, so the cause chain is read instead.
    """
    chain = _cause_chain(exc)
    if any(_is_refused(cause) for cause in chain):
        return "connection refused"
    # anyio ends a deadline with a CancelledError at the bottom of the chain: look above it
    root = next(cause for cause in reversed(chain) if isinstance(cause, Exception))
    if isinstance(root, TimeoutError) or "timeout" in type(root).__name__.lower():
        return "timeout"
    text = str(root).strip()
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def _is_refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED
