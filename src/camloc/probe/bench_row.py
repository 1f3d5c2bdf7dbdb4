"""The probe's row in the localization benchmark (`camloc bench localization`) on Cluttered Fashion-MNIST.

A linear probe on the frozen ImageNet backbone is fitted on train images and scored on val / test exactly like
the CAM nets trained from scratch: the benchmark's own `score_cam` and `row` (camloc.localize.scoring), fed batches
preprocessed as the probe's `explain` does (gray canvas as RGB, shorter side = the backbone's native size, its
normalisation). The row format is the benchmark's: `{"method", "feature_resolution", "top1_cls", "top1_loc",
"gt_known_loc", "maxboxacc_v2", "pxap", "train_seconds", ...}`; train_seconds = feature extraction + fit.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from camloc.data.cluttered import CLASSES, ClutteredArrays
from camloc.io import CONFIG_NAME
from camloc.localize.scoring import row, score_cam
from camloc.models.adapters import get_adapter
from camloc.models.zoo import info_of, load
from camloc.preprocess import image_to_tensor
from camloc.probe.auto import trial_summary
from camloc.probe.fit import ProbeSet, as_pil, fit_probe


class ProbeView:
    """A benchmark split as model input for `model`: `get_batch(indices) -> (x, labels, boxes)` like the
    benchmark's TensorView, but preprocessed with the model's own settings (those `explain` uses)."""

    def __init__(self, arrays: ClutteredArrays, model: nn.Module) -> None:
        self.arrays = arrays
        self.pre = info_of(model).preprocess

    def __len__(self) -> int:
        return len(self.arrays)

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """indices (B,) -> (x (B, 3, H, W) float at the model's input size, labels (B,), boxes (B, 4) in the
        split's pixels)."""
        idx = indices.tolist()
        x = torch.stack([image_to_tensor(as_pil(self.arrays.images[i]), self.pre.input_size, self.pre) for i in idx])
        return x, torch.as_tensor(self.arrays.labels[idx]), torch.as_tensor(self.arrays.boxes[idx])


def feature_resolution(model: nn.Module, arrays: ClutteredArrays) -> list[int]:
    """[h, w] of the feature map the model pools for the split's images (all of one size)."""
    x, _, _ = ProbeView(arrays, model).get_batch(torch.tensor([0]))
    with torch.no_grad():
        return [int(s) for s in get_adapter(model).features(x).shape[-2:]]


def score_probe(
    model: nn.Module, seconds: float, val: ClutteredArrays, test: ClutteredArrays, method: str
) -> dict[str, Any]:
    """The benchmark row of a fitted probe: thresholds chosen on val, numbers on test."""
    val_scorer, _ = score_cam(model, ProbeView(val, model), val)
    test_scorer, _ = score_cam(model, ProbeView(test, model), test)
    return row(method, feature_resolution(model, test), val_scorer, test_scorer, seconds)


def bench_row(
    train: ClutteredArrays,
    val: ClutteredArrays,
    test: ClutteredArrays,
    *,
    backbone: str = "default",
    max_train: int | None = None,
    classes: Sequence[str] = CLASSES,
    classifier: str = "logreg",
    Cs: Sequence[float] | None = None,
    folds: int = 5,
    batch_size: int = 64,
    cache_dir: str | PathLike | None = None,
    save_to: str | PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit a probe on `train` (its first `max_train` images when given; C by cross-validation within them) and
    return its benchmark row.

    With `save_to`, the probe is saved there, and a later call finds it and only scores it (its train_seconds
    come from its config), as the benchmark reuses trained nets. No feature cache unless `cache_dir` is given,
    so that train_seconds is the real cost.
    """
    if max_train is not None and max_train < len(train):
        train = ClutteredArrays(
            train.images[:max_train], train.labels[:max_train], train.boxes[:max_train], train.masks[:max_train]
        )
    net = "ImageNet EfficientNet-Lite0" if backbone == "default" else backbone
    method = f"probe ({classifier}, {len(train)} train images) on frozen {net}"
    saved = _reusable(save_to, len(train), classifier, backbone)
    if saved is not None:
        model, seconds = saved
    else:
        start = time.perf_counter()
        data = ProbeSet(list(train.images), [int(v) for v in train.labels], list(classes), "cluttered/train")
        probe = fit_probe(
            data,
            backbone,
            classifier=classifier,
            Cs=Cs,
            folds=folds,
            batch_size=batch_size,
            cache_dir=cache_dir,
            progress=progress,
        )
        seconds = time.perf_counter() - start
        probe.seconds["total"] = seconds
        trial = trial_summary(probe.fit.settings)
        if progress and trial:
            print(f"{method}: {probe.fit.classifier}; {trial}", file=sys.stderr)
        if save_to is not None:
            probe.save(save_to)
        model = probe.model
    return score_probe(model.eval(), seconds, val, test, method)


def _reusable(
    directory: str | PathLike | None, n_train: int, classifier: str, backbone: str
) -> tuple[nn.Module, float] | None:
    """A probe saved by an earlier `bench_row` with the same settings, and its fitting time; else None."""
    if directory is None or not (Path(directory) / CONFIG_NAME).is_file():
        return None
    meta = json.loads((Path(directory) / CONFIG_NAME).read_text(encoding="utf-8")).get("probe", {})
    same = (
        meta.get("train_images") == n_train
        and meta.get("requested", meta.get("classifier")) == classifier  # "auto" records what it chose
        and meta.get("backbone") == backbone
        and "total" in meta.get("seconds", {})
    )
    return (load(directory), float(meta["seconds"]["total"])) if same else None
