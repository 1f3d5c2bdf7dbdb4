"""How much of the box accumulator's time is OpenCV's own per-level work (the floor of any exact per-level method).

    PYTHONPATH=src python benchmarks/bench_eval_floor.py

Runs `camloc.wsol_boxes.contour_box_sets` on the 300 box maps of the fixture (as benchmarks/bench_eval.py) at 100
thresholds, timing the OpenCV calls it makes (`findContours`, connected components, `contourArea`) apart from the
rest; prints both per map kind.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixture_wsol import kinds_of, make_box_fixture  # noqa: E402

import camloc.wsol_boxes as wb  # noqa: E402
from camloc.data import open_dataset  # noqa: E402
from camloc.metrics import cam_thresholds  # noqa: E402

TIMED = ("findContours", "connectedComponentsWithStatsWithAlgorithm", "contourArea")


class _TimedCV2:
    """cv2 as seen by camloc.wsol_boxes, adding the time of the TIMED calls to `spent`."""

    def __init__(self) -> None:
        self.spent = 0.0

    def __getattr__(self, name: str):
        f = getattr(cv2, name)
        if name not in TIMED:
            return f

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - t0
        return timed


def main() -> None:
    thresholds = cam_thresholds(0.01)
    with tempfile.TemporaryDirectory() as tmp:
        meta = make_box_fixture(Path(tmp) / "b", n=300)
        ds = open_dataset(f"wsol:{meta}")
        maps = [np.load(Path(tmp) / "b" / "maps" / f"{s.image_id}.npy") for s in ds]
    kinds = np.array(kinds_of(300))
    timed = _TimedCV2()
    wb.cv2 = timed
    opencv, total = [], []
    for m in maps:
        timed.spent = 0.0
        t0 = time.perf_counter()
        wb.contour_box_sets(m, thresholds)
        total.append(time.perf_counter() - t0)
        opencv.append(timed.spent)
    opencv, total = np.array(opencv), np.array(total)
    for kind in sorted(set(kinds)):
        sel = kinds == kind
        print(f"{kind:>8}: total {1e3 * total[sel].mean():6.2f} ms/map, "
              f"OpenCV calls {1e3 * opencv[sel].mean():6.2f} ms/map")
    print(f"all: total {total.sum():.3f} s, OpenCV calls {opencv.sum():.3f} s")


if __name__ == "__main__":
    main()
