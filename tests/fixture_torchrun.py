"""Run one `camloc evaluate` command as one process and as two torchrun processes; return both JSON reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def reports_one_and_two(args: list[str], tmp_path: Path) -> tuple[dict, dict]:
    """(report of one process, report of two torchrun processes) of `python -m camloc ... --report PATH`;
    `args` ends with "--report", the report paths are added here. The two-process report keeps its "processes"."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, *args, str(tmp_path / "one.json")], check=True, env=env, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = subprocess.run(
        [*torchrun, *args, str(tmp_path / "two.json")], env=env, capture_output=True, text=True, timeout=120
    )
    assert two.returncode == 0, two.stderr[-2000:]
    return json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
