"""One explain job over several processes (`torchrun --nproc_per_node=N camloc explain ...`, or several machines
through torchrun's rendezvous): rank r takes the inputs at positions i with i % N == r, writes its outputs and its
records (`.explain.rank<r>.tmp.jsonl`, each line tagged with the input position), and rank 0 merges the records, in
input order, into one `explain.jsonl` and the rank summaries into one `explain-summary.json`. Merging streams the
rank files (`heapq.merge`), so it holds one record per rank in memory.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from camloc.io import atomic_path, write_json

MERGED_RECORDS = "explain.jsonl"
MERGED_SUMMARY = "explain-summary.json"


def rank_records(out_dir: Path, rank: int) -> Path:
    """Rank `rank`'s records file in `out_dir` (hidden, removed by `merge`)."""
    return out_dir / f".explain.rank{rank}.tmp.jsonl"


def rank_summary(out_dir: Path, rank: int) -> Path:
    """Rank `rank`'s summary file in `out_dir` (hidden, removed by `merge`)."""
    return out_dir / f".explain.rank{rank}.tmp.summary.json"


class RecordSink:
    """Appends (input position, record) lines to this rank's records file."""

    def __init__(self, out_dir: Path, rank: int) -> None:
        self.path = rank_records(out_dir, rank)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("w", encoding="utf-8")

    def __call__(self, index: int, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps({"index": index, "record": record}) + "\n")

    def close(self) -> None:
        """Close the records file (written lines are kept for `merge`)."""
        self._fh.close()


def _read(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            tagged = json.loads(line)
            yield tagged["index"], json.dumps(tagged["record"])


def merge(out_dir: Path, world: int) -> tuple[Path, Path]:
    """Merge the ranks' records (input order) and summaries into `explain.jsonl` and `explain-summary.json`;
    the rank files are removed. Returns the two paths."""
    streams = [_read(rank_records(out_dir, r)) for r in range(world)]
    records = out_dir / MERGED_RECORDS
    with atomic_path(records) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for _, line in heapq.merge(*streams, key=lambda t: t[0]):
            fh.write(line + "\n")
    total: dict[str, Any] = {"world": world, "done": 0, "skipped": 0, "failed": 0, "failures": [], "ranks": []}
    for r in range(world):
        path = rank_summary(out_dir, r)
        part = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"missing": True}
        total["ranks"].append(part)
        for key in ("done", "skipped", "failed"):
            total[key] += int(part.get(key, 0))
        total["failures"] += part.get("failures", [])
    summary = out_dir / MERGED_SUMMARY
    write_json(summary, total)
    for r in range(world):
        rank_records(out_dir, r).unlink(missing_ok=True)
        rank_summary(out_dir, r).unlink(missing_ok=True)
    return records, summary
