"""Evaluation speed: the accumulators (camloc.localize.metrics) against a straightforward per-threshold loop.

    make bench            # or: PYTHONPATH=src python benchmarks/bench_eval.py [--n 300] [--interval 0.01]

Generates the seeded fixture of tests/fixture_wsol.py (300 box maps, 200 mask maps), evaluates it both ways at
100 CAM thresholds (interval 0.01), asserts identical counts and prints the time ratio of each part.
The straightforward loop does, per map and per threshold: binarise, findContours on the full map, boxes of all
contours and of the largest, IoU against the GT boxes; for PxAP, per threshold, count the foreground and
background pixels at or above it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixture_wsol import kinds_of, make_box_fixture, make_mask_fixture

from camloc.data import open_dataset
from camloc.localize.metrics import BoxAccuracy, PixelAP, cam_thresholds, resize_boxes_wsol, wsol_iou


def slow_box_counts(maps, gts, thresholds, levels=(30, 50, 70), times=None) -> np.ndarray:
    hits = np.zeros((2, len(levels), len(thresholds)), dtype=np.int64)
    for m, gt in zip(maps, gts, strict=False):
        t0 = time.perf_counter()
        u8 = (m * 255).astype(np.uint8)
        for k, t in enumerate(thresholds):
            _, binary = cv2.threshold(u8, int(t * u8.max()), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if contours:
                boxes = []
                for c in contours:
                    x, y, w, h = cv2.boundingRect(c)
                    boxes.append([x, y, min(x + w, m.shape[1] - 1), min(y + h, m.shape[0] - 1)])
                largest = boxes[max(range(len(contours)), key=lambda j: cv2.contourArea(contours[j]))]
            else:
                boxes, largest = [[0, 0, 0, 0]], [0, 0, 0, 0]
            iou_largest = wsol_iou(np.array([largest]), gt).max()
            iou_all = wsol_iou(np.array(boxes), gt).max()
            for j, level in enumerate(levels):
                hits[0, j, k] += iou_largest >= level / 100
                hits[1, j, k] += iou_all >= level / 100
        if times is not None:
            times.append(time.perf_counter() - t0)
    return hits


def slow_pxap_counts(maps, masks, thresholds) -> np.ndarray:
    """tp / fp counts at each edge (>= t), the quantities PxAP's reversed cumulative histograms give."""
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    counts = np.zeros((2, len(edges) - 1), dtype=np.int64)
    for m, (fg, bg) in zip(maps, masks, strict=False):
        for k, t in enumerate(edges[:-1]):
            counts[0, k] += int((m[fg] >= t).sum())
            counts[1, k] += int((m[bg] >= t).sum())
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.01)
    args = ap.parse_args()
    thresholds = cam_thresholds(args.interval)
    with tempfile.TemporaryDirectory() as tmp:
        meta = make_box_fixture(Path(tmp) / "b", n=args.n)
        ds = open_dataset(f"wsol:{meta}")
        maps = [np.load(Path(tmp) / "b" / "maps" / f"{s.image_id}.npy") for s in ds]
        gts = [resize_boxes_wsol(s.boxes, s.size) for s in ds]
        mmeta = make_mask_fixture(Path(tmp) / "m", n=max(args.n * 2 // 3, 1))
        mds = open_dataset(f"wsol:{mmeta}", mask_root=Path(tmp) / "m" / "masks")
        mmaps = [np.load(Path(tmp) / "m" / "maps" / f"{s.image_id}.npy") for s in mds]
        masks = []
        for s in mds:
            fg, ignore = s.masks()
            fg = cv2.resize(fg.astype(np.uint8), (224, 224), interpolation=cv2.INTER_NEAREST) > 0
            ig = cv2.resize(ignore.astype(np.uint8), (224, 224), interpolation=cv2.INTER_NEAREST) > 0
            masks.append((fg, ~(fg | ig)))

    t0 = time.perf_counter()
    BoxAccuracy(thresholds).accumulate(maps[0], gts[0])  # compiles the kernels, or loads them from numba's cache
    PixelAP(thresholds).accumulate(mmaps[0], *masks[0])
    t_jit = time.perf_counter() - t0
    slow_times: list[float] = []
    fast_times: list[float] = []
    t0 = time.perf_counter()
    slow = slow_box_counts(maps, gts, thresholds, times=slow_times)
    t_slow_box = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = BoxAccuracy(thresholds)
    for m, gt in zip(maps, gts, strict=False):
        t1 = time.perf_counter()
        acc.accumulate(m, gt)
        fast_times.append(time.perf_counter() - t1)
    t_fast_box = time.perf_counter() - t0
    assert np.array_equal(acc.hits, slow), "box counts differ"

    t0 = time.perf_counter()
    slow_px = slow_pxap_counts(mmaps, masks, thresholds)
    t_slow_px = time.perf_counter() - t0
    t0 = time.perf_counter()
    pxap = PixelAP(thresholds)
    for m, (fg, bg) in zip(mmaps, masks, strict=False):
        pxap.accumulate(m, fg, ~(fg | bg))
    t_fast_px = time.perf_counter() - t0
    assert np.array_equal(pxap.hist[:, ::-1].cumsum(axis=1)[:, ::-1], slow_px), "PxAP counts differ"

    n_t = len(thresholds)
    print(f"{len(maps)} box maps, {len(mmaps)} mask maps, {n_t} CAM thresholds; counts identical: yes")
    print(f"one-time compile or cache load of the compiled kernels (not in the times below): {t_jit:.2f} s")
    print(
        f"boxes (MaxBoxAcc + V2): loop {t_slow_box:7.2f} s   accumulator {t_fast_box:7.2f} s   "
        f"ratio {t_slow_box / t_fast_box:5.1f}x"
    )
    print(
        f"PxAP:                   loop {t_slow_px:7.2f} s   accumulator {t_fast_px:7.2f} s   "
        f"ratio {t_slow_px / t_fast_px:5.1f}x"
    )
    kinds = np.array(kinds_of(args.n))
    for kind in sorted(set(kinds)):
        sel = kinds == kind
        ts, tf = np.array(slow_times)[sel].sum(), np.array(fast_times)[sel].sum()
        print(
            f"  boxes, {kind:>8} maps (n={sel.sum():3d}): loop {1e3 * ts / sel.sum():7.2f} ms/map   "
            f"accumulator {1e3 * tf / sel.sum():7.2f} ms/map   ratio {ts / tf:5.1f}x"
        )
    total_slow, total_fast = t_slow_box + t_slow_px, t_fast_box + t_fast_px
    print(
        f"all:                    loop {total_slow:7.2f} s   accumulator {total_fast:7.2f} s   "
        f"ratio {total_slow / total_fast:5.1f}x"
    )


if __name__ == "__main__":
    main()
