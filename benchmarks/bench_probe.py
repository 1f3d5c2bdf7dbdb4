"""The probe row of the localization benchmark alone, at chosen split sizes (the full table: `make bench-loc`).

    python benchmarks/bench_probe.py --train 1000 --val 200 --test 1000 --out bench-results/probe.json

Same data (ClutterSpec defaults, the benchmark's splits), same scoring (`camloc.bench.localization.score_cam`,
CAM thresholds from val), so its numbers sit in the same table as the CAM nets'; prints the row as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from camloc.data.cluttered import ClutteredFashionMNIST, ClutterSpec
from camloc.io import write_json
from camloc.probe.bench_row import bench_row
from camloc.probe.fit import CLASSIFIERS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--test", type=int, default=5000)
    p.add_argument("--classifier", choices=CLASSIFIERS, default="logreg")
    p.add_argument("--idx-dir", default=None, help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", type=Path, default=None, help="also write the row (and run info) as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    spec = ClutterSpec()
    splits = {
        name: ClutteredFashionMNIST(name, size, spec, args.idx_dir).arrays()
        for name, size in (("train", args.train), ("val", args.val), ("test", args.test))
    }
    start = time.perf_counter()
    row = bench_row(splits["train"], splits["val"], splits["test"], classifier=args.classifier, progress=True)
    info = {
        "sizes": {"train": args.train, "val": args.val, "test": args.test},
        "threads": args.threads,
        "total_seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(row))
    if args.out is not None:
        write_json(args.out, {"row": row, "info": info})


if __name__ == "__main__":
    main()
