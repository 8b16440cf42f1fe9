"""One JSON ``POST`` and its reply, as plain bytes: the transport under the ``openai`` backend.

The backend used to send through the ``openai`` SDK, whose request and response objects (URL
parsing, header merging, model construction, a second HTTP layer over aiohttp) took most of the
client's CPU per request: about 1 ms under load, enough to keep a 2-core machine from filling 512
slots of a batch-sized run. :class:`AiohttpPoster` sends straight through one ``aiohttp`` session;
:class:`HttpxPoster` through an ``httpx.AsyncClient`` (the fallback without aiohttp, and the form
tests inject with a ``MockTransport``). Retries, status errors and reply checks stay in
:mod:`.openai_compat` (with :mod:`.openai_retry` and :mod:`.openai_reply`), the same for both.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx

#: Which HTTP client sends our requests when none is injected: "aiohttp" (``openai[aiohttp]``,
#: the lighter per request), "httpx", "auto" (aiohttp if installed).
HttpStack = Literal["auto", "aiohttp", "httpx"]


@dataclass(frozen=True)
class HttpReply:
    """An HTTP reply, read whole. ``headers`` look names up ignoring case."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, without parameters (``application/json``); ``*`` when unnamed."""
        return self.headers.get("content-type", "*").split(";", 1)[0].strip()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class PostFailed(Exception):
    """No HTTP reply came: the connection was refused, dropped or timed out. Its ``__cause__`` is
    the HTTP client's own error (read by :func:`~.openai_retry.connection_reason`)."""


class Poster(Protocol):
    """Sends a ``POST`` with a JSON body; raises :class:`PostFailed` when no reply comes."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpReply: ...

    async def aclose(self) -> None: ...


class AiohttpPoster:
    """One ``aiohttp`` session with ``concurrency`` connections; build it inside the running loop.

    ``timeout_s`` bounds connecting and each wait for bytes (as httpx's timeout does), not the whole
    reply: a long generation that keeps its connection alive is not cut off.
    """

    def __init__(self, concurrency: int, timeout_s: float) -> None:
        import aiohttp

        self._errors = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s),
        )
        self._proxies: dict[str, str | None] = {}

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpReply:
        if url not in self._proxies:
            self._proxies[url] = env_proxy(url)
        try:
            async with self._session.post(url, data=body, headers=headers, proxy=self._proxies[url]) as response:
                data = await response.read()
                return HttpReply(response.status, response.headers, data)
        except self._errors as exc:
            raise PostFailed(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._session.close()


class HttpxPoster:
    """Sends through an ``httpx.AsyncClient``: one it builds (closed by :meth:`aclose`) or one the
    caller owns (left open)."""

    def __init__(self, client: httpx.AsyncClient, *, owned: bool) -> None:
        self._client, self._owned = client, owned

    @classmethod
    def build(cls, concurrency: int, timeout_s: float) -> HttpxPoster:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(limits=limits, timeout=timeout_s, follow_redirects=True)
        return cls(client, owned=True)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpReply:
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise PostFailed(type(exc).__name__) from exc
        return HttpReply(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY`` names for ``url`` unless ``NO_PROXY`` exempts it (as httpx reads
    them); looked up once per URL, not per request (aiohttp's ``trust_env`` reads the whole
    environment each time)."""
    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def has_aiohttp() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


def build_poster(stack: HttpStack, concurrency: int, timeout_s: float) -> Poster:
    """The poster for ``stack`` (call inside the event loop that will use it)."""
    if stack == "aiohttp" or (stack == "auto" and has_aiohttp()):
        return AiohttpPoster(concurrency, timeout_s)
    return HttpxPoster.build(concurrency, timeout_s)


def json_headers(api_key: str, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The headers of a chat request: the key as a bearer token, JSON both ways."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", "Accept": "application/json"}
    headers.update({k: str(v) for k, v in (extra or {}).items() if v})
    return headers
