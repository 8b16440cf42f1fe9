"""The ``openai`` backend against a fake OpenAI-compatible server (and, marked slow, a real one)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_http import FakeOpenAIServer, RecordedRequest, Reply, free_port

from tests.helpers_llama import llama_server
from treesynth_core.errors import AuthError, ConfigError, EndpointError
from treesynth_core.llm.base import CURRENT_ATTEMPTS, LLM, Attempts, ChatRequest, ChatResult
from treesynth_core.llm.http_post import HttpReply, env_proxy
from treesynth_core.llm.openai_compat import OpenAICompatLLM
from treesynth_core.llm.openai_reply import reply_message
from treesynth_core.llm.settings import BackendSettings

KEY_ENV = "TREESYNTH_TEST_OPENAI_KEY"
KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
INSTRUCTION = "Reply with JSON only, matching this JSON schema:"
STACKS = [
    "httpx",
    pytest.param(
        "aiohttp",
        marks=pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None, reason="aiohttp not installed"),
    ),
]


class SleepRecorder:
    """Stands in for ``asyncio.sleep`` in the backoff: records the delays, does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class TopOfRange(random.Random):
    """Jitter that always picks the top of its range, so backoff delays are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def make_llm(
    base_url: str,
    *,
    sleep: SleepRecorder | None = None,
    rng: random.Random | None = None,
    http_stack: Any = "httpx",
    **settings: Any,
) -> OpenAICompatLLM:
    """A backend for ``base_url`` with test defaults; the backoff never really sleeps."""
    values: dict[str, Any] = {"backend": "openai", "base_url": base_url, "model": "test-model"}
    values |= {"api_key_env": KEY_ENV, "timeout_s": 5.0, "max_retries": 3} | settings
    settings_ = BackendSettings(**values)
    return OpenAICompatLLM(settings_, sleep=sleep or SleepRecorder(), rng=rng, http_stack=http_stack)


def run(llm: OpenAICompatLLM, *requests: ChatRequest) -> list[ChatResult]:
    """Complete the requests one after another in a fresh event loop, then close the client."""

    async def go() -> list[ChatResult]:
        try:
            return [await llm.complete(request) for request in requests]
        finally:
            await llm.aclose()

    return asyncio.run(go())


def ask(**kwargs: Any) -> ChatRequest:
    return ChatRequest.chat("You are terse.", "Name a person and their age.", **kwargs)


def rejecting(*bad: str, message: str = "response_format {kind} is not supported") -> Any:
    """A responder that answers 400 to the response_format kinds in ``bad``, JSON text to the rest.

    Kinds: "json_schema", "json_object_schema" (json_object with a schema), "json_object".
    """

    def respond(request: RecordedRequest) -> Reply:
        kind = _format_kind(request.response_format)
        if kind in bad:
            return Reply.error(400, message.format(kind=kind))
        return Reply.ok('{"name": "Ada", "age": 36}')

    return respond


def _format_kind(response_format: Any) -> str:
    if not response_format:
        return "none"
    if response_format["type"] == "json_object" and "schema" in response_format:
        return "json_object_schema"
    return str(response_format["type"])


# -- the happy path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_happy_path_sends_the_request_and_reads_the_reply(server: FakeOpenAIServer, stack: str) -> None:
    server.script(Reply.ok("Ada, 36"))
    llm = make_llm(server.base_url, http_stack=stack)
    assert isinstance(llm, LLM)

    [result] = run(llm, ask(temperature=0.2, max_tokens=50, seed=7, top_p=0.9))

    assert result.text == "Ada, 36"
    assert result.model == "fake-model"  # as reported by the server
    assert result.finish_reason == "stop"
    assert result.prompt_tokens > 0 and result.completion_tokens > 0 and result.latency_s > 0
    [sent] = server.chat_requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "test-model"
    assert sent.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a person and their age."},
    ]
    sampling = {name: sent.body[name] for name in ("temperature", "max_tokens", "seed", "top_p")}
    assert sampling == {"temperature": 0.2, "max_tokens": 50, "seed": 7, "top_p": 0.9}
    assert "response_format" not in sent.body


def test_unset_sampling_options_are_not_sent(server: FakeOpenAIServer) -> None:
    run(make_llm(server.base_url), ask())
    [sent] = server.chat_requests
    assert "seed" not in sent.body and "top_p" not in sent.body


@pytest.mark.parametrize("stack", STACKS)
def test_the_sdks_organization_and_project_headers_are_still_sent(
    server: FakeOpenAIServer, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-456")
    run(make_llm(server.base_url, http_stack=stack), ask())
    [sent] = server.chat_requests
    assert (sent.headers["openai-organization"], sent.headers["openai-project"]) == ("org-123", "proj-456")
    assert sent.headers["content-type"] == "application/json"


def test_without_those_variables_no_such_header_is_sent(server: FakeOpenAIServer, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_ORG_ID", raising=False)
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    run(make_llm(server.base_url), ask())
    [sent] = server.chat_requests
    assert "openai-organization" not in sent.headers and "openai-project" not in sent.headers


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "model not found", "type": "x"}}', "model not found"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"error": "bad   things"}', "bad things"),
        (b'{"error": {"message": "", "code": 7}}', "{'message': '', 'code': 7}"),
        (b"<html>\n<body>Gateway</body>\n</html>", "<html> <body>Gateway</body> </html>"),
        (b"", "Error code: 502"),
    ],
)
def test_error_replies_are_read_as_the_openai_sdk_read_them(body: bytes, expected: str) -> None:
    reply = HttpReply(502, httpx.Headers({"content-type": "application/json"}), body)
    assert reply_message(reply, lambda text: text) == expected


def test_an_echoed_key_is_blanked_in_the_message() -> None:
    reply = HttpReply(400, {}, f'{{"error": {{"message": "bad key {KEY}"}}}}'.encode())
    assert reply_message(reply, lambda text: text.replace(KEY, "***")) == "bad key ***"


# -- retries ----------------------------------------------------------------------------------------


def test_429_is_retried_with_backoff_and_retry_after(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(429), Reply.error(429, headers={"Retry-After": "0.25"}), Reply.ok("done"))
    sleep = SleepRecorder()

    [result] = run(make_llm(server.base_url, sleep=sleep), ask())

    assert result.text == "done"
    assert len(server.chat_requests) == 3
    first, second = sleep.delays
    assert 0.0 <= first <= 0.5  # full jitter over [0, base]
    assert second == 0.25  # the server's Retry-After wins


def test_backoff_doubles_up_to_the_cap(server: FakeOpenAIServer) -> None:
    server.default = Reply.error(503)
    sleep = SleepRecorder()

    with pytest.raises(EndpointError, match="kept failing after 8 attempts: HTTP 503"):
        run(make_llm(server.base_url, sleep=sleep, rng=TopOfRange(), max_retries=7), ask())

    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0]


def test_retry_after_is_capped(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(429, headers={"Retry-After": "3600"}), Reply.ok())
    sleep = SleepRecorder()
    run(make_llm(server.base_url, sleep=sleep), ask())
    assert sleep.delays == [60.0]


def test_5xx_is_retried_then_endpoint_error_names_the_endpoint(server: FakeOpenAIServer) -> None:
    server.default = Reply.error(500, "the GPU caught fire")
    sleep = SleepRecorder()

    with pytest.raises(EndpointError, match="kept failing after 3 attempts: HTTP 500: the GPU caught fire") as info:
        run(make_llm(server.base_url, sleep=sleep, max_retries=2), ask())

    message = str(info.value)
    assert server.base_url in message and "3 attempts" in message
    assert "HTTP 500" in message and "the GPU caught fire" in message
    assert len(server.chat_requests) == 3 and len(sleep.delays) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_auth_error_without_retries(server: FakeOpenAIServer, status: int) -> None:
    server.default = Reply.error(status, "invalid api key")
    sleep = SleepRecorder()

    with pytest.raises(AuthError, match=rf"refused the API key \(HTTP {status}\): invalid api key") as info:
        run(make_llm(server.base_url, sleep=sleep), ask())

    message = str(info.value)
    assert server.base_url in message and KEY_ENV in message and str(status) in message
    assert len(server.chat_requests) == 1 and sleep.delays == []


def test_other_4xx_is_endpoint_error_without_retries(server: FakeOpenAIServer) -> None:
    server.default = Reply.error(404, "model 'test-model' not found")
    sleep = SleepRecorder()

    with pytest.raises(EndpointError, match="answered HTTP 404: model 'test-model' not found") as info:
        run(make_llm(server.base_url, sleep=sleep), ask())

    assert not isinstance(info.value, AuthError)
    assert str(info.value) == f"{server.base_url} answered HTTP 404: model 'test-model' not found"
    assert len(server.chat_requests) == 1 and sleep.delays == []


@pytest.mark.parametrize("stack", STACKS)
def test_timeout_is_retried_then_endpoint_error(server: FakeOpenAIServer, stack: str) -> None:
    server.default = Reply.hang()
    sleep = SleepRecorder()
    llm = make_llm(server.base_url, sleep=sleep, http_stack=stack, timeout_s=0.2, max_retries=1)

    started = time.perf_counter()
    with pytest.raises(EndpointError, match="could not reach .* after 2 attempts: timed out after 0.2s") as info:
        run(llm, ask())

    assert str(info.value) == f"could not reach {server.base_url} after 2 attempts: timed out after 0.2s"
    assert len(server.chat_requests) == 2 and len(sleep.delays) == 1
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("stack", STACKS)
def test_dropped_connection_is_retried(server: FakeOpenAIServer, stack: str) -> None:
    server.script(Reply.close(), Reply.ok("second time lucky"))
    sleep = SleepRecorder()

    [result] = run(make_llm(server.base_url, sleep=sleep, http_stack=stack), ask())

    assert result.text == "second time lucky"
    assert len(server.chat_requests) == 2 and len(sleep.delays) == 1


@pytest.mark.parametrize("stack", STACKS)
def test_connection_refused_is_endpoint_error(stack: str) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    sleep = SleepRecorder()

    with pytest.raises(EndpointError, match="could not reach .* after 3 attempts: connection refused") as info:
        run(make_llm(base_url, sleep=sleep, http_stack=stack, max_retries=2), ask())

    assert str(info.value) == f"could not reach {base_url} after 3 attempts: connection refused"
    assert len(sleep.delays) == 2


#: Replies that are not chat completions: (reply, what the error calls the last one).
NOT_COMPLETIONS = {
    "not JSON": (Reply.raw("Service temporarily unavailable.\nTry later."), "a body that is not JSON"),
    "HTML": (Reply.raw("<!DOCTYPE html>\n<html><body>Sign in</body></html>", "text/html"), "an HTML page"),
    "empty": (Reply.raw(""), "an empty body"),
    "not an object": (Reply(body=[1, 2]), "JSON that is not a chat completion: '[1, 2]'"),
}


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("kind", list(NOT_COMPLETIONS))
def test_a_reply_that_is_not_a_chat_completion_is_retried_then_one_line(
    server: FakeOpenAIServer, stack: str, kind: str
) -> None:
    reply, what = NOT_COMPLETIONS[kind]
    server.default = reply
    sleep = SleepRecorder()

    with pytest.raises(EndpointError, match="sent no usable chat completion in 3 attempts") as info:
        run(make_llm(server.base_url, sleep=sleep, http_stack=stack, max_retries=2), ask())

    message = str(info.value)
    assert message.startswith(f"{server.base_url} sent no usable chat completion in 3 attempts; the last was {what}")
    assert "\n" not in message and "Traceback" not in message
    assert len(server.chat_requests) == 3 and len(sleep.delays) == 2


def test_a_bad_reply_then_a_good_one_succeeds(server: FakeOpenAIServer) -> None:
    server.script(Reply.raw("<html>captive portal</html>", "text/html"), Reply(body={"choices": []}), Reply.ok("hi"))
    [result] = run(make_llm(server.base_url), ask())
    assert result.text == "hi" and len(server.chat_requests) == 3


def test_a_quoted_body_is_cut_short_and_holds_no_secret(server: FakeOpenAIServer) -> None:
    server.respond = lambda request: Reply.raw(
        f"echo {request.headers['authorization']} key=sk-other1234567 " + "x" * 500
    )
    with pytest.raises(EndpointError, match="a body that is not JSON") as info:
        run(make_llm(server.base_url, max_retries=0), ask())
    quoted = str(info.value).split("not JSON: ", 1)[1]
    assert KEY not in quoted and "sk-other1234567" not in quoted and "Bearer ***" in quoted
    assert quoted.endswith("...") and len(quoted) <= 100 + len("''...")


def test_every_request_is_noted_in_the_attempts_of_the_call(server: FakeOpenAIServer) -> None:
    server.script(Reply.error(503), Reply.raw("nope"), Reply.close(), Reply.ok("made it"))
    attempts = Attempts()

    async def go() -> ChatResult:
        CURRENT_ATTEMPTS.set(attempts)
        return (await asyncio.gather(make_llm(server.base_url).complete(ask())))[0]

    assert asyncio.run(go()).text == "made it"
    assert attempts.sent == len(server.chat_requests) == 4
    assert attempts.errors[:2] == ["HTTP 503", "a body that is not JSON: 'nope'"] and len(attempts.errors) == 3


def test_a_refused_connection_is_a_try_that_sent_nothing() -> None:
    attempts = Attempts()

    async def go() -> None:
        CURRENT_ATTEMPTS.set(attempts)
        await make_llm(f"http://127.0.0.1:{free_port()}/v1", max_retries=1).complete(ask())

    with pytest.raises(EndpointError, match="connection refused"):
        asyncio.run(go())
    assert attempts == Attempts(sent=0, errors=["connection refused", "connection refused"])


# -- structured output ------------------------------------------------------------------------------


def test_json_schema_is_sent_when_the_request_has_a_schema(server: FakeOpenAIServer) -> None:
    run(make_llm(server.base_url), ask(schema=SCHEMA, schema_name="person"))

    [sent] = server.chat_requests
    assert sent.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": SCHEMA, "strict": False},
    }
    assert sent.last_user_message() == "Name a person and their age."


def test_auto_falls_back_to_json_object_on_400_and_remembers(server: FakeOpenAIServer) -> None:
    server.respond = rejecting("json_schema")
    sleep = SleepRecorder()
    llm = make_llm(server.base_url, sleep=sleep)

    first, second = run(llm, ask(schema=SCHEMA), ask(schema=SCHEMA))

    assert json.loads(first.text) == json.loads(second.text) == {"name": "Ada", "age": 36}
    kinds = [_format_kind(r.response_format) for r in server.chat_requests]
    assert kinds == ["json_schema", "json_object_schema", "json_object_schema"]  # remembered
    assert server.chat_requests[1].response_format == {"type": "json_object", "schema": SCHEMA}
    user = server.chat_requests[1].last_user_message()
    assert user.startswith("Name a person and their age.\n\n" + INSTRUCTION)
    assert json.loads(user.split(INSTRUCTION, 1)[1]) == SCHEMA
    assert llm.structured_format == "json_object_schema" and sleep.delays == []


def test_auto_falls_back_on_llama_cpp_style_500_without_retrying(server: FakeOpenAIServer) -> None:
    llama_cpp_message = (
        "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
    )
    server.respond = lambda request: (
        Reply.error(500, llama_cpp_message)
        if _format_kind(request.response_format) == "json_schema"
        else Reply.ok('{"name": "Ada", "age": 36}')
    )
    sleep = SleepRecorder()

    run(make_llm(server.base_url, sleep=sleep), ask(schema=SCHEMA))

    assert [_format_kind(r.response_format) for r in server.chat_requests] == ["json_schema", "json_object_schema"]
    assert sleep.delays == []


def test_auto_walks_down_to_no_response_format(server: FakeOpenAIServer) -> None:
    server.respond = rejecting("json_schema", "json_object_schema", "json_object")
    llm = make_llm(server.base_url)

    run(llm, ask(schema=SCHEMA), ask())

    kinds = [_format_kind(r.response_format) for r in server.chat_requests]
    assert kinds == ["json_schema", "json_object_schema", "json_object", "none", "none"]
    assert INSTRUCTION in server.chat_requests[3].last_user_message()
    assert INSTRUCTION not in server.chat_requests[4].last_user_message()  # no schema, no instruction
    assert llm.structured_format == "none"


@pytest.mark.parametrize(
    ("structured", "expected"),
    [("json_object", {"type": "json_object", "schema": SCHEMA}), ("none", None)],
)
def test_forced_structured_modes(server: FakeOpenAIServer, structured: str, expected: Any) -> None:
    run(make_llm(server.base_url, structured=structured), ask(schema=SCHEMA))

    [sent] = server.chat_requests
    assert sent.response_format == expected
    assert INSTRUCTION in sent.last_user_message()


def test_forced_json_schema_does_not_fall_back(server: FakeOpenAIServer) -> None:
    server.respond = rejecting("json_schema")

    with pytest.raises(EndpointError, match=r"rejected response_format 'json_schema' \(HTTP 400\)") as info:
        run(make_llm(server.base_url, structured="json_schema"), ask(schema=SCHEMA))

    assert "response_format 'json_schema'" in str(info.value) and server.base_url in str(info.value)
    assert len(server.chat_requests) == 1


# -- the key ----------------------------------------------------------------------------------------


def test_key_never_appears_in_errors_repr_describe_or_logs(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    def echoing_the_key(status: int) -> Any:
        return lambda request: Reply.error(status, f"you sent {request.headers['authorization']}")

    caplog.set_level(logging.DEBUG)
    messages = []
    for status in (400, 401, 500):
        server.respond = echoing_the_key(status)
        with pytest.raises(EndpointError, match=rf"HTTP {status}\)?: you sent Bearer \*\*\*") as info:
            run(make_llm(server.base_url, max_retries=1), ask())
        messages.append(str(info.value))
    llm = make_llm(server.base_url)

    assert all("you sent Bearer ***" in message for message in messages)
    for text in [*messages, repr(llm), llm.describe(), caplog.text]:
        assert KEY not in text
    assert KEY_ENV in llm.describe()


def test_missing_key_for_a_remote_endpoint_is_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(AuthError, match="no API key for https://api.example.com/v1") as info:
        make_llm("https://api.example.com/v1")
    assert KEY_ENV in str(info.value) and "https://api.example.com/v1" in str(info.value)


def test_missing_key_for_a_local_endpoint_sends_a_dummy(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    run(make_llm(server.base_url), ask())
    assert server.chat_requests[0].headers["authorization"] == "Bearer not-needed"


def test_missing_model_is_config_error() -> None:
    with pytest.raises(ConfigError, match="model"):
        OpenAICompatLLM(BackendSettings(backend="openai", base_url="http://localhost:8080/v1"))


def test_default_base_url_is_openai() -> None:
    llm = OpenAICompatLLM(BackendSettings(backend="openai", model="gpt-4o-mini", api_key_env=KEY_ENV))
    assert llm.base_url == "https://api.openai.com/v1"


# -- concurrency and event loops -------------------------------------------------------------------


def test_concurrency_limit_is_respected() -> None:
    with FakeOpenAIServer(delay_s=0.05) as server:
        llm = make_llm(server.base_url, concurrency=3)

        async def many() -> list[ChatResult]:
            try:
                return await asyncio.gather(*(llm.complete(ask(seed=i)) for i in range(12)))
            finally:
                await llm.aclose()

        results = asyncio.run(many())

    assert len(results) == 12
    assert server.max_in_flight == 3


@pytest.mark.parametrize("stack", STACKS)
def test_one_object_serves_successive_event_loops(
    server: FakeOpenAIServer, stack: str, caplog: pytest.LogCaptureFixture
) -> None:
    llm = make_llm(server.base_url, http_stack=stack)
    texts = [asyncio.run(llm.complete(ask())).text for _ in range(3)]  # no aclose in between
    assert texts == ["ok", "ok", "ok"]
    assert "Unclosed" not in caplog.text


def test_injected_http_client_is_used_and_left_open() -> None:
    bodies: list[dict[str, Any]] = [
        {"choices": []},
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "length"}]},
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=bodies[len(seen) - 1])

    async def go() -> tuple[list[str], bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            settings = BackendSettings(backend="openai", base_url="http://mock.local/v1", model="m")
            settings = settings.model_copy(update={"api_key_env": KEY_ENV, "max_retries": 0})
            llm = OpenAICompatLLM(settings, http_client=client)
            errors = []
            expected = ["a reply with no choices for model 'm'", r"a reply without content for model 'm' \("]
            for match in expected:
                with pytest.raises(EndpointError, match=match) as info:
                    await llm.complete(ask())
                errors.append(str(info.value))
            await llm.aclose()
            return errors, client.is_closed

    errors, closed = asyncio.run(go())

    assert "with no choices" in errors[0] and "http://mock.local/v1" in errors[0]
    assert "without content" in errors[1] and "'length'" in errors[1]
    assert str(seen[0].url) == "http://mock.local/v1/chat/completions"
    assert not closed


# -- a real OpenAI-compatible server ---------------------------------------------------------------


@pytest.mark.slow
def test_real_llama_cpp_server(tmp_path: Path) -> None:
    with llama_server(tmp_path) as base_url:
        llm = make_llm(base_url, model="smollm2", timeout_s=60.0)
        plain, structured = run(
            llm,
            ChatRequest.chat(None, "Say hello in three words.", max_tokens=16, temperature=0.0, seed=1),
            ChatRequest.chat(
                "You write JSON.", "Invent a person.", max_tokens=64, temperature=0.0, seed=1, schema=SCHEMA
            ),
        )

    assert plain.text.strip() and plain.completion_tokens > 0
    # what holds on any CPU: the reply follows the schema, or it is reported cut off by max_tokens
    assert structured.finish_reason in {"stop", "length"}
    if structured.finish_reason == "stop":
        person = json.loads(structured.text)
        assert isinstance(person["name"], str) and isinstance(person["age"], int)
    # this server rejects json_schema and takes {"type": "json_object", "schema": ...} instead
    assert llm.structured_format == "json_object_schema"


def test_the_aiohttp_path_reads_the_proxy_variables_as_httpx_does(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("https://api.openai.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert env_proxy("https://api.openai.com/v1/chat/completions") == "http://proxy.local:3128"
    assert env_proxy("https://127.0.0.1:8000/v1/chat/completions") is None  # exempted
    assert env_proxy("http://api.example.com/v1/chat/completions") is None  # no HTTP_PROXY
