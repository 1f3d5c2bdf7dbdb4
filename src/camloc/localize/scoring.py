"""The one place where the localization benchmark calls the metrics of `camloc.localize.metrics` and the paper's boxes of
`camloc.boxes` (no second implementation of either lives here).

A `Scorer` takes, per image, the score map of the GT class (any resolution), the image's GT box and mask, and the
paper box(es) of the top-1 and GT classes; it returns the rows' numbers. Conventions are those of the metrics
module, at the images' own resolution (the metrics module's "native" option: the 96-pixel canvas is not resized to
Choe et al.'s 224, which would only interpolate): MaxBoxAccV2 / PxAP with the reference's thresholding, contours
and inclusive IoU, GT boxes given as the dataset's numbers; top-1 / GT-known loc with the paper's boxes,
x1 / y1 exclusive, IoU >= 0.5.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from camloc.boxes import DEFAULT_BOX_RULE, box_from_map
from camloc.data.cluttered import ClutteredArrays
from camloc.engine import normalize, upsample
from camloc.localize.metrics import BoxAccuracy, ClassLocAccuracy, PixelAP, cam_thresholds, prepare_scoremap
from camloc.models.adapters import get_adapter


def paper_box(heatmap: np.ndarray) -> np.ndarray:
    """The paper's box of one min-max normalised (H, W) map at image resolution, by camloc's one box rule
    (`DEFAULT_BOX_RULE`; on normalised maps its two readings agree): (4,) int64, x1 / y1 exclusive."""
    return box_from_map(heatmap, DEFAULT_BOX_RULE)


class Scorer:
    """Accumulators of one split for one method."""

    def __init__(self, interval: float = 0.01) -> None:
        thresholds = cam_thresholds(interval)
        self.box = BoxAccuracy(thresholds)
        self.pxap = PixelAP(thresholds)
        self.loc = ClassLocAccuracy()

    def add(
        self,
        heatmap: np.ndarray,
        gt_box: np.ndarray,
        mask: np.ndarray,
        label: int,
        pred: int,
        pred_box: np.ndarray,
        gt_known_box: np.ndarray,
    ) -> None:
        """heatmap: (h, w) GT-class map; gt_box (4,) exclusive; mask (H, W) bool at image size; pred: top-1 class
        with its paper box; gt_known_box: the paper box of the GT class's map."""
        h, w = mask.shape
        scoremap, _ = prepare_scoremap(heatmap, (w, h))
        self.box.accumulate(scoremap, np.asarray(gt_box, dtype=np.int64)[None])
        self.pxap.accumulate(scoremap, mask)
        self.loc.accumulate(
            label,
            gt_box[None],
            gt_known_box,
            classes=np.array([pred]),
            guess_classes=np.array([pred]),
            guess_boxes=pred_box[None],
        )

    def best_threshold_index(self) -> dict[str, dict[str, int]]:
        """Per IoU level, the CAM threshold index with the best MaxBoxAccV2 on this split (for calibration)."""
        return self.box.summary()["best_threshold"]

    def result(self, fixed_index: dict[str, dict[str, int]] | None = None) -> dict:
        """Percentages: top1_cls, top1_loc, gt_known_loc, maxboxacc_v2 (at `fixed_index` thresholds when given,
        e.g. those chosen on val), maxboxacc_v2_oracle (best threshold on this split), pxap."""
        loc = self.loc.summary()
        tuned = self.box.summary(fixed_index)
        oracle = self.box.summary()
        thresholds = self.box.thresholds
        chosen = tuned["best_threshold"]["maxboxacc_v2"]
        return {
            "top1_cls": loc["top1_cls"],
            "top1_loc": loc["top1_loc"],
            "gt_known_loc": loc["gt_known_loc"],
            "maxboxacc_v2": tuned["maxboxacc_v2"],
            "maxboxacc_v2_oracle": oracle["maxboxacc_v2"],
            "cam_threshold": {k: float(thresholds[v]) for k, v in chosen.items()},
            "pxap": self.pxap.value(),
        }


class BatchSource(Protocol):
    """What `score_cam` reads a split through: `get_batch(indices) -> (inputs, labels, boxes)`."""

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """indices (B,) -> (inputs (B, 3, H, W) float, labels (B,) int64, boxes (B, 4) [x0, y0, x1, y1) pixels)."""
        ...


EVAL_BATCH = 200  # images per forward pass when scoring a split


@torch.no_grad()
def score_cam(model: torch.nn.Module, view: BatchSource, arr: ClutteredArrays) -> tuple[Scorer, np.ndarray]:
    """Scorer of a CAM net on one split of N images, and its top-1 predictions (N,) int64."""
    adapter = get_adapter(model)
    scorer, preds = Scorer(), []
    size = tuple(arr.images.shape[1:])
    for start in range(0, len(arr), EVAL_BATCH):
        idx = torch.arange(start, min(start + EVAL_BATCH, len(arr)))
        x, y, _ = view.get_batch(idx)
        feats, logits = adapter.forward(x)
        pred = logits.argmax(1)
        raw = adapter.maps(feats, torch.stack([y, pred], 1))  # (B, 2, h, w)
        maps = normalize(upsample(raw, size)).numpy()
        raw_np = raw.numpy()
        for j, i in enumerate(idx.tolist()):
            scorer.add(
                raw_np[j, 0],
                arr.boxes[i],
                arr.masks[i],
                int(y[j]),
                int(pred[j]),
                paper_box(maps[j, 1]),
                paper_box(maps[j, 0]),
            )
        preds.append(pred.numpy())
    return scorer, np.concatenate(preds)


def row(method: str, resolution: list[int] | None, val: Scorer, test: Scorer, seconds: float) -> dict[str, Any]:
    """One results row: test numbers with the CAM thresholds chosen on val."""
    res = test.result(val.best_threshold_index())
    return {
        "method": method,
        "feature_resolution": resolution,
        "top1_cls": res["top1_cls"],
        "top1_loc": res["top1_loc"],
        "gt_known_loc": res["gt_known_loc"],
        "maxboxacc_v2": res["maxboxacc_v2"],
        "pxap": res["pxap"],
        "train_seconds": round(seconds, 1),
        "maxboxacc_v2_test_oracle": res["maxboxacc_v2_oracle"],
        "cam_threshold_from_val": res["cam_threshold"],
    }
