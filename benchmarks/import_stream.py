"""Streaming import: speed against the parse floor and peak memory against the file size, one run.

Writes a ~300 MB Alpaca-style JSONL file in a temporary folder, imports it into a temporary project
with ``treesynth_core.data.ingest.import_file`` (staged, then made visible in one transaction), and
prints the import time against the cost floor measured in the same run (reading the file and parsing
every line as JSON, no mapping, no SQLite), and the process's peak RSS
(``resource.getrusage(...).ru_maxrss``) against the file size. The import streams, so peak RSS /
file size must stay well below 1. On Linux it also resets the kernel's high-water mark before the
import (``/proc/self/clear_refs``) and prints the import's own peak.

    .venv/bin/python benchmarks/import_stream.py [--mb 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.data.ingest import ColumnMap, import_file  # noqa: E402
from treesynth_core.store.project import Project  # noqa: E402

WORDS = (
    "tree leaf criterion value sample dataset model prompt answer question coverage diverse synthetic "
    "partition subspace path root node split fraction ratio prime sum product café naïve"
).split()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_jsonl(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Write rows until the file reaches ``target_bytes``, a chunk at a time; return the row count."""
    rng = random.Random(seed)
    written = rows = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < target_bytes:
            chunk = []
            for _ in range(5_000):
                rows += 1
                row = {
                    "instruction": f"{rows}: {sentence(rng, rng.randint(10, 30))}",
                    "input": sentence(rng, rng.randint(0, 15)) if rng.random() < 0.5 else "",
                    "output": sentence(rng, rng.randint(20, 60)),
                }
                chunk.append(json.dumps(row, ensure_ascii=False) + "\n")
            text = "".join(chunk)
            handle.write(text)
            written += len(text.encode("utf-8"))
    return rows


def proc_status_bytes(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in bytes (Linux only; None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS, so that it then measures
    the import alone; ``ru_maxrss`` cannot be reset and also covers writing the file."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def parse_floor(path: Path) -> float:
    """Seconds to read the file line by line and parse every line as JSON: the cost floor of any
    JSONL import, measured in the same run as the import so the ratio survives a noisy machine."""
    start = time.perf_counter()
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                json.loads(line)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=300, help="size of the JSONL file to write, in MB")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="import-stream-") as tmp:
        data = Path(tmp) / "big.jsonl"
        start = time.perf_counter()
        rows = write_jsonl(data, int(args.mb * 1e6))
        write_s = time.perf_counter() - start
        size = data.stat().st_size
        floor_s = parse_floor(data)

        with Project.create(Path(tmp) / "project", task="benchmark") as project:
            rss_before = proc_status_bytes("VmRSS")
            hwm_reset = reset_peak()
            cmap = ColumnMap(instruction="instruction", input="input", output="output")
            start = time.perf_counter()
            summary = import_file(project, data, cmap, sample_set="big")
            import_s = time.perf_counter() - start
            import_peak = proc_status_bytes("VmHWM") if hwm_reset else None
        assert summary.imported == rows, (summary, rows)
        peak = peak_rss_bytes()
        db_size = sum(f.stat().st_size for f in (Path(tmp) / "project").iterdir() if f.is_file())

    def mb(n: int | None) -> float | None:
        return None if n is None else round(n / 1e6, 1)

    result = {
        "file_mb": mb(size),
        "rows": rows,
        "write_s": round(write_s, 1),
        "import_s": round(import_s, 1),
        "rows_per_s": round(rows / import_s),
        "parse_floor_s": round(floor_s, 1),
        "import_over_parse_floor": round(import_s / floor_s, 2),
        "mb_per_s": round(size / 1e6 / import_s, 1),
        "peak_rss_mb": mb(peak),
        "peak_rss_over_file_size": round(peak / size, 3),
        "rss_before_import_mb": mb(rss_before),
        "import_peak_rss_mb": mb(import_peak),
        "import_growth_over_file_size": (
            round((import_peak - rss_before) / size, 4) if import_peak and rss_before else None
        ),
        "project_files_mb": mb(db_size),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"file:    {result['file_mb']} MB JSONL, {rows:,} rows (written in {result['write_s']} s)")
    print(f"import:  {result['import_s']} s = {result['rows_per_s']:,} rows/s, {result['mb_per_s']} MB/s")
    print(
        f"ratio:   import / (read + json.loads every line) = {result['import_over_parse_floor']} "
        f"(floor {result['parse_floor_s']} s, same run)"
    )
    print(f"memory:  peak RSS (ru_maxrss, whole run) {result['peak_rss_mb']} MB")
    print(f"ratio:   peak RSS / file size = {result['peak_rss_over_file_size']}")
    if import_peak is not None:
        print(
            f"import:  RSS {result['rss_before_import_mb']} MB before, peak {result['import_peak_rss_mb']} MB during "
            f"(VmHWM); growth / file size = {result['import_growth_over_file_size']}"
        )
    print(f"project: {result['project_files_mb']} MB on disk")


if __name__ == "__main__":
    main()
