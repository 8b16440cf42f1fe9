"""The JSON body of an OpenAI-compatible ``POST /chat/completions``: model, messages, sampling, and
the reply's JSON schema in one of the structured-output formats servers take (:data:`Format`).

The online backend (:mod:`.openai_compat`) and batch files (:mod:`treesynth_core.batch`) send the
same body. Servers differ in the formats they accept, so the backend walks a ladder of formats
(:data:`FORMAT_LADDERS`), falling back when a server rejects one.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from .base import ChatRequest

#: How a schema is asked for. ``json_object_schema`` is ``{"type": "json_object", "schema": ...}``,
#: the form llama.cpp's Python server (and Anyscale/Together-style servers) understand.
Format = Literal["json_schema", "json_object_schema", "json_object", "none"]

#: For each ``settings.structured`` value, the formats tried in order when the server rejects one.
FORMAT_LADDERS: dict[str, tuple[Format, ...]] = {
    "auto": ("json_schema", "json_object_schema", "json_object", "none"),
    "json_schema": ("json_schema",),
    "json_object": ("json_object_schema", "json_object"),
    "none": ("none",),
}


def request_body(model: str, request: ChatRequest, fmt: Format) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``: model, messages, sampling, response_format (in
    the structured-output format ``fmt``). Batch files (:mod:`treesynth_core.batch`) carry the same body."""
    messages = request.message_dicts()
    params: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.seed is not None:
        params["seed"] = request.seed
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.schema is None:
        return params
    schema = json.loads(json.dumps(request.schema))  # plain dicts and lists, whatever Mapping came in
    if fmt == "json_schema":
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": schema, "strict": False},
        }
        return params
    if fmt == "json_object_schema":
        params["response_format"] = {"type": "json_object", "schema": schema}
    elif fmt == "json_object":
        params["response_format"] = {"type": "json_object"}
    params["messages"] = _with_schema_instruction(messages, schema)
    return params


def _with_schema_instruction(messages: list[dict[str, str]], schema: Any) -> list[dict[str, str]]:
    """Append "reply with JSON matching <schema>" to the last user message (or add one)."""
    instruction = "Reply with JSON only, matching this JSON schema: " + json.dumps(schema, ensure_ascii=False)
    for message in reversed(messages):
        if message["role"] == "user":
            message["content"] = f"{message['content']}\n\n{instruction}"
            return messages
    return [*messages, {"role": "user", "content": instruction}]
