"""The probe's row in the localization benchmark: fit on the train split, measure on the test split.

`bench_row(train, val, test)` returns the benchmark's row format (metrics in percent, time in seconds):
`{"method", "feature_resolution", "top1_cls", "top1_loc", "gt_known_loc", "maxboxacc_v2", "pxap",
"train_seconds"}`. Datasets are anything with `len`, indexing and samples carrying `.image` (path or array),
`.label`, `.boxes` (n, 4; x1, y1 exclusive) and a mask as `.mask` or `.masks()` (camloc.data, Cluttered
Fashion-MNIST).

Protocols (those of `camloc.metrics`): top-1 / GT-known localization are the paper's (boxes by `camloc.boxes` at
the explain defaults, IoU >= 0.5, maps at the image size); MaxBoxAccV2 and PxAP are Choe et al.'s as wsolevaluation
computes them (the raw CAM of the true class resized to 224 x 224, bicubic, min-max; GT boxes and masks rescaled).
"""

from __future__ import annotations

import time
from os import PathLike
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from camloc.explainer import explain
from camloc.metrics import (WSOL_SIZE, BoxAccuracy, ClassLocAccuracy, PixelAP, cam_thresholds, prepare_scoremap,
                            resize_boxes_wsol)
from camloc.models.adapters import get_adapter
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor
from camloc.probe import as_pil, fit_probe, probe_set_from

ROW_KEYS = ("method", "feature_resolution", "top1_cls", "top1_loc", "gt_known_loc", "maxboxacc_v2", "pxap",
            "train_seconds")


def sample_mask(sample: Any) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(foreground, ignore or None) of a sample, from `.mask` (an array) or `.masks()`; None without a mask."""
    mask = getattr(sample, "mask", None)
    if isinstance(mask, np.ndarray):
        return mask.astype(bool), None
    loader = getattr(sample, "masks", None)
    return loader() if callable(loader) else None


def _resize_mask(mask: np.ndarray) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), (WSOL_SIZE, WSOL_SIZE), interpolation=cv2.INTER_NEAREST) > 0


def localization_metrics(model: nn.Module, dataset: Sequence[Any], batch_size: int = 32) -> dict[str, float | None]:
    """top1_cls, top1_loc, gt_known_loc, maxboxacc_v2 (mean over IoU 30/50/70) and pxap (None without masks), in
    percent, of `model` (class indices = the dataset's) on `dataset`."""
    num_classes = get_adapter(model).num_classes
    thresholds = cam_thresholds()
    loc, boxacc, pxap = ClassLocAccuracy(), BoxAccuracy(thresholds), PixelAP(thresholds)
    have_masks = False
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = [as_pil(s.image) for s in samples]
        res = explain(model, images, top_k=num_classes, map_sizes=())
        for j, (s, image) in enumerate(zip(samples, images, strict=True)):
            classes = res.classes[j].cpu().numpy()
            boxes = res.boxes[j].cpu().numpy()
            gt = int(np.flatnonzero(classes == s.label)[0])
            gt_boxes = np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4)
            loc.accumulate(s.label, gt_boxes, boxes[gt], classes[:5], boxes[:5])
            scoremap, _ = prepare_scoremap(res.raw[j][gt].float().cpu().numpy())
            boxacc.accumulate(scoremap, resize_boxes_wsol(gt_boxes, (image.width, image.height)))
            masks = sample_mask(s)
            if masks is not None:
                have_masks = True
                fg, ignore = masks
                pxap.accumulate(scoremap, _resize_mask(fg), None if ignore is None else _resize_mask(ignore))
    summary = loc.summary()
    return {"top1_cls": summary["top1_cls"], "top1_loc": summary["top1_loc"],
            "gt_known_loc": summary["gt_known_loc"],
            "maxboxacc_v2": boxacc.summary()["maxboxacc_v2"]["mean"],
            "pxap": pxap.value() if have_masks else None}


def feature_resolution(model: nn.Module, dataset: Sequence[Any]) -> int:
    """Side of the feature map the model pools for the dataset's first image (shorter side)."""
    image = as_pil(dataset[0].image)
    pre = info_of(model).preprocess
    x = image_to_tensor(image, pre.input_size, pre)[None].to(get_adapter(model).weight.device)
    with torch.no_grad():
        return int(min(get_adapter(model).features(x).shape[-2:]))


def bench_row(train_ds: Sequence[Any], val_ds: Sequence[Any] | None, test_ds: Sequence[Any], *,
              backbone: str = "default", classifier: str = "logreg", Cs: Sequence[float] | None = None,
              folds: int = 5, batch_size: int = 32, cache_dir: str | PathLike | None = None,
              device: str | torch.device = "cpu", progress: bool = False) -> dict[str, Any]:
    """Fit a probe on `train_ds` (C by cross-validation within it) and measure it on `test_ds`.

    `val_ds` is not needed: the probe has no threshold or epoch to choose (C is cross-validated on train, and
    MaxBoxAccV2 takes its best threshold by definition); it is accepted for the benchmark's common signature.
    train_seconds: feature extraction (cache disabled unless `cache_dir` is given, so it is the real cost) + fit.
    """
    start = time.perf_counter()
    probe = fit_probe(probe_set_from(train_ds), backbone, classifier=classifier, Cs=Cs, folds=folds,
                      batch_size=batch_size, cache_dir=cache_dir, device=device, progress=progress)
    train_seconds = time.perf_counter() - start
    metrics = localization_metrics(probe.model, test_ds, batch_size)
    return {"method": f"probe-{classifier} (frozen {backbone})",
            "feature_resolution": feature_resolution(probe.model, test_ds), **metrics,
            "train_seconds": round(train_seconds, 2)}
