"""Probe classifiers on real photos: the localization set's pasted objects as the classes of a probe.

    make locset                                   # builds .cache/locset when missing
    python benchmarks/probe_locset.py             # auto (the default), logreg, span and cells: about 9 minutes
    python benchmarks/probe_locset.py --classifiers cells --contrast-threshold 0.3   # cells, lower box threshold
    python benchmarks/probe_locset.py --contrast 0.3,0.7   # instead: the training images' contrast boxes, 2 minutes

The set of docs/resolution.md (`benchmarks/build_locset.py`) pastes real objects at many scales onto real
backgrounds. Its objects with 29 images or more (12: apple, butterfly, cat, espresso, kitten, mandrill, motorcycle,
orange, pekinese, quokka, retriever, squirrel) become the classes; each class's images, in file order, go
alternately to training (210) and test (198). For each classifier it fits `fit_probe` on the training images (their
classes only), then prints the fit's seconds and cross-validated accuracy, top-1 accuracy on the test images, and
GT-known localization with explain's default settings (the box for the true class at IoU >= 0.5 with the object's
box) per group. It answers whether the default classifier's boxes hold on photos as they do not on the synthetic
discs and squares of `benchmarks/probe_maps.py` (docs/probe.md, "Small objects").
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import camloc
from camloc.boxes import box_iou
from camloc.probe.auto import trial_summary
from camloc.probe.contrast import DEFAULT_CONTRAST, boxes_of, contrast_maps, contrast_settings
from camloc.probe.fit import CLASSIFIERS, ProbeSet, fit_probe

MIN_IMAGES = 29  # the objects pasted at every scale and background; the rest are single real photos


def split(manifest: dict) -> tuple[list[str], list[dict], list[dict]]:
    """Classes (objects with MIN_IMAGES images or more) and the alternate train / test halves of their items."""
    counts = collections.Counter(item["object"] for item in manifest["items"])
    classes = sorted(name for name, n in counts.items() if n >= MIN_IMAGES)
    train: list[dict] = []
    test: list[dict] = []
    for name in classes:
        items = sorted((item for item in manifest["items"] if item["object"] == name), key=lambda item: item["file"])
        train += items[0::2]
        test += items[1::2]
    return classes, train, test


def contrast_hits(items: list[dict], found: np.ndarray) -> str:
    """The contrast boxes `found` (camloc/probe/contrast.py) of `items` against their true boxes: hits
    (IoU >= 0.5) per group and the median box area over the object's."""
    hits: collections.Counter[str] = collections.Counter()
    totals: collections.Counter[str] = collections.Counter()
    ratios = []
    for box, item in zip(found, items, strict=True):
        truth = torch.tensor(item["boxes"]).double()
        hits[item["group"]] += int(box_iou(torch.from_numpy(box)[None].double(), truth).max() >= 0.5)
        totals[item["group"]] += 1
        ratios.append(float(np.prod(box[2:] - box[:2]) / np.prod((truth[0, 2:] - truth[0, :2]).numpy())))
    groups = ", ".join(f"{g} {hits[g]}/{totals[g]}" for g in sorted(totals))
    return f"{sum(hits.values())}/{len(items)} ({groups}); box area / object area {np.median(ratios):.2f} (median)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", type=Path, default=Path(".cache/locset"), help="a folder built by build_locset.py")
    p.add_argument(
        "--classifiers", default="auto,logreg,span,cells", help=f"comma-separated, of {', '.join(CLASSIFIERS)}"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--contrast-threshold", type=float, default=None, help="the cells classifier's (default: the library's, 0.7)"
    )
    p.add_argument(
        "--contrast",
        default=None,
        help="instead: the contrast boxes of the training images at these thresholds (e.g. 0.3,0.7) against their "
        "true boxes",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    manifest = json.loads((args.set / "manifest.json").read_text(encoding="utf-8"))
    classes, train, test = split(manifest)
    y_train = [classes.index(item["object"]) for item in train]
    if args.contrast:  # the score maps once, boxed at every threshold
        maps = contrast_maps(camloc.load("default"), [str(args.set / item["file"]) for item in train], y_train)
        for threshold in (float(v) for v in args.contrast.split(",")):
            print(f"threshold {threshold:g}: {contrast_hits(train, boxes_of(maps, threshold))}", flush=True)
        return
    y_test = [classes.index(item["object"]) for item in test]
    test_paths = [str(args.set / item["file"]) for item in test]
    groups = sorted({item["group"] for item in test})
    print(f"{len(classes)} classes, {len(train)} training and {len(test)} test images\n")
    print("| classifier | fit s | cross-validated | top-1 | GT-known | " + " | ".join(groups) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(groups))
    for classifier in args.classifiers.split(","):
        t0 = time.perf_counter()
        contrast = DEFAULT_CONTRAST if args.contrast_threshold is None else contrast_settings(args.contrast_threshold)
        probe = fit_probe(
            ProbeSet([str(args.set / item["file"]) for item in train], y_train, classes),
            classifier=classifier,
            contrast=contrast,
        )
        seconds = time.perf_counter() - t0
        top1 = camloc.explain(probe.model, test_paths, top_k=1, map_sizes=())
        right = int((top1.classes[:, 0].numpy() == np.array(y_test)).sum())
        res = camloc.explain(probe.model, test_paths, targets=[[y] for y in y_test])
        assert res.boxes is not None
        hits: collections.Counter[str] = collections.Counter()
        totals: collections.Counter[str] = collections.Counter()
        for j, item in enumerate(test):
            box = res.boxes[j][0] if isinstance(res.boxes, list) else res.boxes[j, 0]
            iou = box_iou(box[None].double().cpu(), torch.tensor(item["boxes"]).double()).max()
            hits[item["group"]] += int(iou >= 0.5)
            totals[item["group"]] += 1
        cells = " | ".join(f"{hits[g]}/{totals[g]}" for g in groups)
        name = classifier if classifier == probe.fit.classifier else f"{classifier}: {probe.fit.classifier}"
        if probe.fit.classifier == "cells":
            name += f" (contrast {contrast.threshold:g})"
        trial = trial_summary(probe.fit.settings)
        if trial:
            print(f"({name}) {trial}", file=sys.stderr, flush=True)
        print(
            f"| {name} | {seconds:.0f} | {probe.fit.cv_accuracy:.3f} | {right}/{len(test)} | "
            f"{sum(hits.values())}/{len(test)} | {cells} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
