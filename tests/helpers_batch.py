"""Test doubles for batch generation: a model that answers a chat completion body the same way
every time (:func:`reply_for`), ``vllm run-batch``'s output for an input file (:func:`run_batch`),
and a fake OpenAI Files and Batches server (:class:`FakeBatchServer`, real HTTP on 127.0.0.1).

    with FakeBatchServer(final="expired", finish_lines=2) as server:
        ...  # point a client at server.base_url; each GET of a batch moves it one status on
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from treesynth_core.store import Project
from treesynth_core.tree import model as T

#: Words samples are drawn from: random draws of 9 share few words, so no two look like duplicates.
WORDS = tuple(
    "apple river stone cloud number train garden window copper violin ladder candle harbor meadow pencil "
    "rocket forest bridge silver market island thunder basket planet marble engine lantern valley whistle "
    "feather circle mirror canyon jacket orchard tunnel saddle glacier button rabbit compass falcon cotton "
    "desert fountain hammer kettle lemon magnet needle oyster parrot quartz ribbon shovel tiger umbrella "
    "velvet walnut yogurt zebra anchor bakery cactus dragon eagle fabric ginger helmet igloo jungle koala".split()
)


#: Which requests the model cuts off at ``max_tokens`` (none by default).
CutOff = Callable[[Mapping[str, Any]], bool]


def reply_for(body: Mapping[str, Any], cut_off: CutOff | None = None, *, repeat: bool = False) -> dict[str, Any]:
    """The chat completion a deterministic model sends for ``body``: the samples a samples schema
    asks for (words drawn from the request's seed and messages), a value a routing schema lists, else
    an answer with a number drawn the same way. ``cut_off`` says which replies stop at the token
    limit; ``repeat`` makes every other samples reply repeat its first sample."""
    seed = f"{body.get('seed')}|{json.dumps(body.get('messages'), sort_keys=True)}"
    rng = random.Random(seed)
    fmt = body.get("response_format")
    properties = fmt["json_schema"]["schema"]["properties"] if fmt else {}
    if "samples" in properties:
        n = properties["samples"].get("maxItems") or 3
        samples = [" ".join(rng.sample(WORDS, 9)).capitalize() + "?" for _ in range(n)]
        if repeat and n > 1 and int(body.get("seed") or 0) % 2 == 0:  # a duplicate the leaf drops
            samples[-1] = samples[0]
        text = json.dumps({"samples": samples})
    elif "value" in properties:  # a routing choice: any listed value but the last ("none of these")
        text = json.dumps({"value": rng.choice(properties["value"]["enum"][:-1])})
    else:  # the same answer for the same question whatever the seed, so verification draws agree
        question = random.Random(json.dumps(body.get("messages"), sort_keys=True))
        text = f"Step by step the answer is {question.randint(1, 10_000)}."
    finish = "stop"
    if cut_off is not None and cut_off(body):
        text, finish = text[: len(text) // 2], "length"
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": body.get("model", "m"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }


Model = Callable[[Mapping[str, Any]], dict[str, Any]]


def output_line(custom_id: str, body: Mapping[str, Any], number: int, model: Model = reply_for) -> dict[str, Any]:
    """A line of an output file (OpenAI's and ``vllm run-batch``'s shape)."""
    return {
        "id": f"vllm-{number}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": f"req-{number}", "body": model(body)},
        "error": None,
    }


def run_batch(
    input_path: Path, output_path: Path, *, skip: Callable[[int], bool] = lambda i: False, model: Model = reply_for
) -> int:
    """What ``vllm run-batch -i INPUT -o OUTPUT`` writes (input order kept); lines ``skip`` names are
    left out; ``model`` writes each reply. Returns how many lines were written."""
    written = 0
    with input_path.open() as src, output_path.open("w") as dst:
        for i, text in enumerate(src):
            if skip(i):
                continue
            line = json.loads(text)
            dst.write(json.dumps(output_line(line["custom_id"], line["body"], i, model)) + "\n")
            written += 1
    return written


@dataclass
class _Batch:
    id: str
    input_file_id: str
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None


@dataclass
class FakeBatchState:
    """What the fake server holds; tests read it."""

    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


class FakeBatchServer:
    """OpenAI's Files and Batches endpoints, on 127.0.0.1, in a background thread.

    A batch goes ``validating`` -> ``in_progress`` -> ``finalizing`` -> ``final`` (``completed``,
    ``failed``, ``expired``), one step per GET of it. When it ends, its output file answers the
    first ``finish_lines`` requests (all when None); with ``fail_every`` k, every k-th of those goes
    to the error file as a 500 instead. ``model`` writes each reply (:func:`reply_for` by default).
    """

    def __init__(
        self,
        *,
        final: str = "completed",
        finish_lines: int | None = None,
        fail_every: int = 0,
        model: Model = reply_for,
    ) -> None:
        self.final, self.finish_lines, self.fail_every, self.model = final, finish_lines, fail_every, model
        self.state = FakeBatchState()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeBatchServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _advance(self, batch: _Batch) -> None:
        order = ["validating", "in_progress", "finalizing", self.final]
        if batch.status not in order or batch.status == self.final:
            return
        batch.status = order[order.index(batch.status) + 1]
        if batch.status != self.final or self.final == "failed":
            return
        lines = [json.loads(t) for t in self.state.files[batch.input_file_id].decode().splitlines() if t.strip()]
        if self.finish_lines is not None:
            lines = lines[: self.finish_lines]
        out, errors = [], []
        for i, line in enumerate(lines):
            if self.fail_every and i % self.fail_every == self.fail_every - 1:
                errors.append(
                    {
                        "id": f"b-{i}",
                        "custom_id": line["custom_id"],
                        "response": {"status_code": 500, "body": {"error": {"message": "server error"}}},
                        "error": None,
                    }
                )
            else:
                out.append(output_line(line["custom_id"], line["body"], i, self.model))
        random.Random(0).shuffle(out)  # OpenAI does not keep input order
        for kind, rows in (("output", out), ("error", errors)):
            if rows:
                file_id = f"file-{kind}-{batch.id}"
                self.state.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                setattr(batch, f"{kind}_file_id", file_id)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, data: Any, raw: bytes | None = None) -> None:
                payload = raw if raw is not None else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                state = server.state
                state.requests.append(("POST", self.path))
                state.auth.append(self.headers.get("Authorization", ""))
                raw = self._body()
                if self.path == "/v1/files":
                    boundary = re.search(r"boundary=(.+)", self.headers["Content-Type"])
                    assert boundary is not None
                    content = b""
                    for part in raw.split(b"--" + boundary.group(1).encode()):
                        if b'name="file"' in part:
                            content = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
                    file_id = f"file-{len(state.files) + 1}"
                    state.files[file_id] = content
                    self._send(200, {"id": file_id, "object": "file", "purpose": "batch"})
                elif self.path == "/v1/batches":
                    data = json.loads(raw)
                    batch = _Batch(f"batch_{len(state.batches) + 1}", data["input_file_id"])
                    state.batches[batch.id] = batch
                    self._send(200, _batch_json(batch))
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_GET(self) -> None:
                state = server.state
                state.requests.append(("GET", self.path))
                if m := re.fullmatch(r"/v1/batches/([^/]+)", self.path):
                    batch = state.batches[m.group(1)]
                    server._advance(batch)
                    self._send(200, _batch_json(batch))
                elif m := re.fullmatch(r"/v1/files/([^/]+)/content", self.path):
                    self._send(200, None, raw=state.files[m.group(1)])
                else:
                    self._send(404, {"error": {"message": "not found"}})

        return Handler


def _batch_json(batch: _Batch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": batch.input_file_id,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
    }


def make_project(folder: Path) -> Path:
    """A project at ``folder`` with two approved leaves (Percentages, Fractions) under the root."""
    with Project.create(folder, task="Grade-school math word problems", style="GSM8K-style") as p:

        def build(tree: T.Tree) -> T.Tree:
            tree = T.attach_split(
                tree,
                tree.root_id,
                criterion="Math topic",
                values=["Percentages", "Fractions"],
                provenance=T.Provenance("llm", model="m"),
            )
            return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

        p.apply("grow", build, actor="llm")
    return folder
