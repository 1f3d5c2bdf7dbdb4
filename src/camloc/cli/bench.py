"""`camloc bench localization`: the localization benchmark and resolution study on Cluttered Fashion-MNIST."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `camloc bench localization`, its options and help, on the subcommand parser `sub`."""
    p = sub.add_parser(
        "bench",
        help="benchmarks (localization on Cluttered Fashion-MNIST)",
        description="Run a benchmark and write its results (JSON, Markdown, PNG).",
    )
    what = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    loc = what.add_parser(
        "localization",
        help="train GAP nets at several feature resolutions and a box "
        "regressor; score top-1/GT-known loc, MaxBoxAccV2 and PxAP on the test split",
        description="Trains the resolution study's nets on Cluttered Fashion-MNIST (about 25 "
        "minutes on 2 CPU cores; --quick under 2) and writes DIR/results.json, "
        "results.md and resolution.png. Trained nets stay in DIR/nets/ (a rerun "
        "reuses or resumes them).",
    )
    loc.add_argument("--out", type=Path, required=True, help="output folder")
    loc.add_argument("--quick", action="store_true", help="small smoke-test version (under 2 minutes)")
    loc.add_argument(
        "--idx-dir",
        default=None,
        help="folder with the four Fashion-MNIST IDX files "
        "(default: `make data`'s .cache/fashion-mnist or /usr/share/datasets/fashion-mnist)",
    )
    loc.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: min(2, cores), or 1 when "
        "the machine is already busy: OpenMP threads that wait for each other lose more than they gain)",
    )
    loc.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    loc.set_defaults(run=run)


def default_threads() -> int:
    """min(2, cores), or 1 when the load average already exceeds the number of cores."""
    cores = os.cpu_count() or 1
    return 1 if os.getloadavg()[0] > cores else min(2, cores)


def run(args: argparse.Namespace) -> int:
    """Train and score the study (resuming what `--out` holds), write results.json / .md / the plot; 0."""
    from camloc.bench.localization import FULL, QUICK, run_study
    from camloc.bench.report import write_all
    from camloc.data.idx import find_idx_dir

    find_idx_dir(args.idx_dir)  # fail early with the data message
    torch.set_num_threads(args.threads or default_threads())
    command = (
        "camloc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:2] == ["bench"]
        else f"camloc bench localization{' --quick' if args.quick else ''} --out {args.out}"
    )
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    rows, info = run_study(args.out, QUICK if args.quick else FULL, args.idx_dir, args.quiet, log)
    write_all(args.out, rows, info, command)
    if not args.quiet:
        print((args.out / "results.md").read_text(), end="")
    return 0
