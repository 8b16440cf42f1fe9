"""``treesynth models``: the local models on this machine (see :mod:`treesynth_core.llm.discovery`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..llm.discovery import DEFAULT_PORTS, LOCAL_KEY_ENV, PORTS_ENV, Discovery, discover, parse_ports, ports_from_env
from .common import JsonOpt, emit

PortsOpt = Annotated[
    str | None,
    typer.Option(
        "--ports",
        help="Ports of 127.0.0.1 to probe, comma-separated (default: "
        + ", ".join(f"{port} {kind}" for port, kind in DEFAULT_PORTS.items())
        + f"; or ${PORTS_ENV}).",
    ),
]


def models_text(found: Discovery) -> str:
    """The table ``treesynth models`` prints, with the flags that use each find."""
    lines = ["OpenAI-compatible servers on 127.0.0.1:"]
    if not found.servers:
        lines.append("  none answering on ports " + ", ".join(str(p) for p in found.ports))
    for server in found.servers:
        lines.append(f"  {server.kind:<10} {server.base_url}  ({len(server.models)} models)")
        for model in server.models:
            lines.append(f"    {model}")
    if found.servers:
        first = found.servers[0]
        lines.append(
            f"  use one: --llm openai --base-url {first.base_url} --model NAME --api-key-env {LOCAL_KEY_ENV}"
            f" (${LOCAL_KEY_ENV} unset: the server gets no key)"
        )
    lines += ["", "GGUF files:"]
    if not found.ggufs:
        lines.append("  none in Ollama's, LM Studio's or the Hugging Face cache")
    for gguf in found.ggufs:
        lines.append(f"  {gguf.source:<12} {gguf.name}  {gguf.size_text()}  {gguf.path}")
    if found.ggufs:
        lines.append("  use one: --llm embedded --gguf PATH")
    return "\n".join(lines)


def models(ports: PortsOpt = None, as_json: JsonOpt = False) -> None:
    """List the local models: OpenAI-compatible servers running on this machine (Ollama, LM Studio, vLLM,
    llama.cpp; probed on 127.0.0.1 only) with their model names, and GGUF files in Ollama's, LM Studio's
    and the Hugging Face cache."""
    found = discover(parse_ports(ports) if ports else ports_from_env())
    emit(as_json, found.to_json(), models_text(found))
