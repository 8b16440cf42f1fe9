"""Collecting in bulk: output files streamed in chunks, one transaction a chunk. A collect that stops
half way (a malformed or truncated line, an error inside a chunk's transaction) keeps whole chunks;
the rerun takes in the rest, and nothing is kept or logged twice."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.helpers_batch import output_line, reply_for
from treesynth_core.batch import collect as collect_module
from treesynth_core.batch.collect import Collected, collect, read_outcomes
from treesynth_core.errors import DataError
from treesynth_core.store import Project, batches
from treesynth_core.store.db import DB_NAME

MODEL = "gpt-4o-mini"


def reply_line(i: int) -> str:
    body = {"model": MODEL, "seed": i, "messages": [{"role": "user", "content": f"question {i}"}]}
    return json.dumps(output_line(f"k{i:03d}", body, i, reply_for)) + "\n"


def failed_line(i: int, line_id: str) -> str:
    error = {"code": "server_error", "message": "boom"}
    return json.dumps({"id": line_id, "custom_id": f"k{i:03d}", "response": None, "error": error}) + "\n"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines))
    return path


def run_collect(project: Project, path: Path, batch_id: str | None = None) -> Collected:
    run_id = project.start_run("batch-collect", {})
    try:
        return collect(project, read_outcomes(path), model=MODEL, calls={}, batch_id=batch_id, run_id=run_id)
    finally:
        project.finish_run(run_id)


def state(project: Project) -> tuple[list[str], list[str], list[str]]:
    """(keys with a reply, cache keys of logged calls with a reply, cache keys of logged failures), sorted."""
    conn = sqlite3.connect(project.path / DB_NAME)
    try:
        replies = sorted(k for (k,) in conn.execute("SELECT key FROM batch_replies"))
        calls = sorted(k for (k,) in conn.execute("SELECT cache_key FROM llm_calls WHERE error IS NULL"))
        failures = sorted(k for (k,) in conn.execute("SELECT cache_key FROM llm_calls WHERE error IS NOT NULL"))
    finally:
        conn.close()
    return replies, calls, failures


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(collect_module, "CHUNK", 4)
    return 4


#: 11 lines: 10 replies and, fourth, a failed request.
LINES = [reply_line(i) for i in range(3)] + [failed_line(90, "req-90")] + [reply_line(i) for i in range(3, 10)]
ALL_KEYS = [f"k{i:03d}" for i in range(10)]


def test_a_malformed_line_keeps_the_whole_chunks_before_it_and_the_rerun_completes(project, tmp_path, small_chunks):
    broken = write(tmp_path / "broken.jsonl", [*LINES[:9], "{not json\n", *LINES[9:]])
    with pytest.raises(DataError, match=r"broken\.jsonl:10 is not JSON"):
        run_collect(project, broken)
    replies, calls, failures = state(project)
    assert replies == calls == ALL_KEYS[:7]  # chunks 1-2 (8 lines: 7 replies, the failure) whole, each logged once
    assert failures == ["k090"]
    again = run_collect(project, write(tmp_path / "fixed.jsonl", LINES))
    assert (again.replies, again.known, again.failed) == (3, 7, 0)
    assert state(project) == (ALL_KEYS, ALL_KEYS, ["k090"])  # nothing kept or logged twice


def test_a_truncated_file_keeps_whole_chunks_and_the_full_file_completes_it(project, tmp_path, small_chunks):
    cut = "".join(LINES)[: -len(LINES[-1]) // 2]  # the last line cut half way, as a killed writer leaves it
    truncated = tmp_path / "out.jsonl"
    truncated.write_text(cut)
    with pytest.raises(DataError, match="is not JSON"):
        run_collect(project, truncated)
    assert state(project) == (ALL_KEYS[:7], ALL_KEYS[:7], ["k090"])  # the third chunk never came whole
    write(truncated, LINES)
    first = run_collect(project, truncated)
    assert (first.replies, first.known, first.failed) == (3, 7, 0)
    second = run_collect(project, truncated)
    assert (second.replies, second.known, second.failed) == (0, 10, 0)
    assert state(project) == (ALL_KEYS, ALL_KEYS, ["k090"])
    with Project.open(project.path) as p:
        stats = p.stats().by_command["batch-collect"]
    assert (stats.calls, stats.failed, stats.prompt_tokens) == (10, 1, 1000)  # each reply once, the failure once


def test_an_error_inside_a_chunks_transaction_rolls_the_whole_chunk_back(project, tmp_path, small_chunks, monkeypatch):
    real, chunks = batches.insert_calls, [0]

    def fail_on_the_second_chunk(conn, calls):
        chunks[0] += 1
        if chunks[0] == 2:  # its replies are inserted already: they must go with the call rows
            raise RuntimeError("disk full")
        real(conn, calls)

    monkeypatch.setattr(batches, "insert_calls", fail_on_the_second_chunk)
    path = write(tmp_path / "out.jsonl", LINES)
    with pytest.raises(RuntimeError, match="disk full"):
        run_collect(project, path)
    assert state(project) == (ALL_KEYS[:3], ALL_KEYS[:3], ["k090"])  # the first chunk only
    monkeypatch.setattr(batches, "insert_calls", real)
    again = run_collect(project, path)
    assert (again.replies, again.known, again.failed) == (7, 3, 0)
    assert state(project) == (ALL_KEYS, ALL_KEYS, ["k090"])


def test_a_failure_is_logged_once_per_line_and_never_once_the_key_has_a_reply(project, tmp_path):
    errors = write(tmp_path / "errors.jsonl", [failed_line(1, "req-a"), failed_line(2, "req-b")])
    first = run_collect(project, errors, batch_id="b1")
    assert (first.failed, sorted(first.errors)) == (2, ["k001", "k002"])
    assert run_collect(project, errors, batch_id="b1").failed == 0  # the same file again
    retried = run_collect(project, write(tmp_path / "next.jsonl", [failed_line(1, "req-c")]), batch_id="b2")
    assert retried.failed == 1  # the request failed again in the next round's batch: a second failed call
    run_collect(project, write(tmp_path / "ok.jsonl", [reply_line(2)]), batch_id="b3")
    assert run_collect(project, write(tmp_path / "late.jsonl", [failed_line(2, "req-d")]), batch_id="b4").failed == 0
    assert state(project) == (["k002"], ["k002"], ["k001", "k001", "k002"])


def test_a_key_twice_in_one_chunk_is_kept_and_logged_once(project, tmp_path):
    got = run_collect(project, write(tmp_path / "out.jsonl", [reply_line(1), reply_line(1), reply_line(2)]))
    assert (got.replies, got.known) == (2, 1)
    assert state(project) == (["k001", "k002"], ["k001", "k002"], [])
