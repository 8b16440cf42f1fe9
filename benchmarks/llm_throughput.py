"""Throughput of the ``openai`` backend against a fake server with a fixed delay per request.

With ``N`` requests, a delay ``d`` and concurrency ``C``, a perfect client needs ``N * d / C`` seconds;
the ratio of the measured wall time to that ideal is the client's overhead (targets: <= 1.15 at
concurrency 64, <= 1.3 at 512, with 10,000 requests and a 1 s delay). Each point is also measured
with a bare aiohttp loop (one session, a semaphore, post and parse: no retries, no checks), the
floor this machine allows in the same minute; on a shared, busy machine compare ``ratio / floor``.

    .venv/bin/python benchmarks/llm_throughput.py              # 64 and 512, 10,000 requests, 1 s (~6 min)
    .venv/bin/python benchmarks/llm_throughput.py --quick      # 3,000 requests, 0.3 s (~40 s)
    .venv/bin/python benchmarks/llm_throughput.py --n 2000 --delay 0.1 --concurrency 64 [--json]
    .venv/bin/python benchmarks/llm_throughput.py --recorded   # through a run's cache and call log

``--recorded`` sends the same requests through ``CachedLLM(LoggedLLM(client))`` into a throwaway
project, as a run does: call-log and cache rows are written behind the event loop
(``treesynth_core/store/write_behind.py``), and the wall time includes committing the last of them.

The fake server runs in a child process by default (as a real server would, it then has a core of
its own); ``--server thread`` runs it in this process instead, sharing the interpreter lock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers_http import FakeOpenAIServer, FakeServerProcess  # noqa: E402

from treesynth_core.llm.base import ChatRequest  # noqa: E402
from treesynth_core.llm.http_post import HttpStack  # noqa: E402
from treesynth_core.llm.openai_compat import OpenAICompatLLM  # noqa: E402
from treesynth_core.llm.recording import recording  # noqa: E402
from treesynth_core.llm.settings import BackendSettings  # noqa: E402
from treesynth_core.store import Project  # noqa: E402

#: The ratio each concurrency must reach (others: the 512 one).
TARGETS = {64: 1.15, 512: 1.3}
TARGET_RATIO = TARGETS[512]


@dataclass(frozen=True)
class Measurement:
    """One benchmark run: what was asked, how long it took, and how that compares to ideal."""

    n: int
    delay_s: float
    concurrency: int
    server: str
    http_stack: str
    wall_s: float
    ideal_s: float
    ratio: float
    requests_per_s: float
    client_cpu_ms_per_request: float
    #: The server's CPU per request; -1 when it runs in a thread (then it is inside the client's).
    server_cpu_ms_per_request: float
    max_in_flight: int
    target_ratio: float = TARGET_RATIO
    #: The bare aiohttp loop's ratio in the same run (-1: not measured).
    floor_ratio: float = -1.0
    #: Through a run's cache and call log (SQLite), as a real run goes.
    recorded: bool = False


async def fire(llm: Any, n: int) -> None:
    """Send ``n`` small requests at once; the backend's semaphore limits how many are in flight."""
    requests = [ChatRequest.chat("You are terse.", f"Say hi #{i}", max_tokens=8, seed=i) for i in range(n)]
    try:
        await asyncio.gather(*(llm.complete(request) for request in requests))
    finally:
        await llm.aclose()


async def fire_bare(base_url: str, n: int, concurrency: int) -> None:
    """The floor: the same requests through one aiohttp session, nothing else."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
    url = base_url + "/chat/completions"

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body = {"model": "fake-model", "messages": [{"role": "user", "content": f"Say hi #{i}"}], "max_tokens": 8}
        async with gate, session.post(url, data=json.dumps(body).encode(), headers=headers) as response:
            json.loads(await response.read())

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(one(session, i) for i in range(n)))


def floor(n: int, delay_s: float, concurrency: int) -> float:
    """The bare loop's ratio against a fresh fake server process."""
    with FakeServerProcess(delay_s=delay_s) as fake:
        started = time.perf_counter()
        asyncio.run(fire_bare(fake.base_url, n, concurrency))
        wall = time.perf_counter() - started
    return round(wall / (n * delay_s / concurrency), 3)


def measure(
    n: int, delay_s: float, concurrency: int, server: str, http_stack: HttpStack, *, recorded: bool = False
) -> Measurement:
    """Run the benchmark once against a fresh fake server (``server``: "process" or "thread");
    ``recorded``: through a run's cache and call log in a throwaway project, as a real run goes."""
    fake = FakeServerProcess(delay_s=delay_s) if server == "process" else FakeOpenAIServer(delay_s=delay_s)
    with fake:
        settings = BackendSettings(
            backend="openai",
            base_url=fake.base_url,
            model="fake-model",
            api_key_env="TREESYNTH_BENCH_API_KEY",
            concurrency=concurrency,
            timeout_s=60.0,
            max_retries=0,
        )
        llm: Any = OpenAICompatLLM(settings, http_stack=http_stack)
        with (
            tempfile.TemporaryDirectory(prefix="bench-") as folder,
            Project.create(Path(folder) / "p", task="b") as project,
        ):
            if recorded:  # as a run goes (jobs.runs.run_llm_work): rows written behind, all committed at the end
                llm = recording(llm, project, project.start_run("bench"))
            started, cpu_started = time.perf_counter(), time.process_time()
            with project.write_behind() if recorded else contextlib.nullcontext():
                asyncio.run(fire(llm, n))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if isinstance(fake, FakeOpenAIServer):
        max_in_flight, server_cpu_ms = fake.max_in_flight, -1.0
    else:
        max_in_flight = fake.stats.get("max_in_flight", -1)
        server_cpu_ms = round(1000 * fake.stats.get("cpu_s", -0.001) / n, 3)
    ideal = n * delay_s / concurrency
    return Measurement(
        n=n,
        delay_s=delay_s,
        concurrency=concurrency,
        server=server,
        http_stack=http_stack,
        wall_s=round(wall, 3),
        ideal_s=round(ideal, 3),
        ratio=round(wall / ideal, 3) if ideal else float("inf"),
        requests_per_s=round(n / wall, 1),
        client_cpu_ms_per_request=round(1000 * cpu / n, 3),
        server_cpu_ms_per_request=server_cpu_ms,
        max_in_flight=max_in_flight,
        target_ratio=TARGETS.get(concurrency, TARGET_RATIO),
        recorded=recorded,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=None, help="number of requests (default 10,000; --quick 3,000)")
    parser.add_argument(
        "--delay", type=float, default=None, help="server delay per request, s (default 1; --quick 0.3)"
    )
    parser.add_argument(
        "--concurrency", type=int, action="append", help="requests in flight; repeatable (default 64 and 512)"
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run: 3,000 requests, 0.3 s delay")
    parser.add_argument("--recorded", action="store_true", help="through a run's cache and call log (a project)")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare aiohttp loop")
    parser.add_argument("--server", choices=("process", "thread"), default="process", help="where the fake server runs")
    parser.add_argument("--http-stack", choices=("auto", "aiohttp", "httpx"), default="auto", help="client HTTP stack")
    parser.add_argument("--json", action="store_true", help="print one JSON object a line")
    args = parser.parse_args(argv)
    n = args.n or (3000 if args.quick else 10_000)
    delay = args.delay if args.delay is not None else (0.3 if args.quick else 1.0)
    results = []
    for concurrency in args.concurrency or list(TARGETS):
        result = measure(n, delay, concurrency, args.server, args.http_stack, recorded=args.recorded)
        if not args.no_floor:
            result = replace(result, floor_ratio=floor(n, delay, concurrency))
        results.append(result)
        if args.json:
            print(json.dumps(asdict(result)), flush=True)
        else:
            report(result)
    return 0


def report(result: Measurement) -> None:
    verdict = "ok" if result.ratio <= result.target_ratio else f"above target {result.target_ratio}"
    print(
        f"{result.n} requests, delay {result.delay_s * 1000:g} ms, concurrency {result.concurrency}, "
        f"server in a {result.server}, http stack {result.http_stack}"
        + (", with the cache and call log" if result.recorded else "")
    )
    print(f"  wall  {result.wall_s:.3f} s  ({result.requests_per_s:.0f} req/s)")
    print(f"  ideal {result.ideal_s:.3f} s  (n x delay / concurrency)")
    print(f"  ratio {result.ratio:.3f}  {verdict}; max in flight at the server: {result.max_in_flight}")
    if result.floor_ratio > 0:
        print(
            f"  floor {result.floor_ratio:.3f}  (a bare aiohttp loop, same run); "
            f"ratio / floor {result.ratio / result.floor_ratio:.3f}"
        )
    server_cpu = result.server_cpu_ms_per_request
    print(
        f"  CPU per request: client {result.client_cpu_ms_per_request:.2f} ms"
        + (f", server {server_cpu:.2f} ms" if server_cpu >= 0 else " (server thread included)"),
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
