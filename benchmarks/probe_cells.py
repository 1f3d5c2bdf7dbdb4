"""Probe fits tried against issue 11, item 6 (small objects, loose boxes; docs/probe.md), measured by
`benchmarks/probe_maps.py --fits`. None reaches the issue's 8 of 10 boxes, so none is in the library; they are kept
here, with their numbers in docs/probe.md, so that the study can be rerun and extended.

A probe fitted on pooled features learns what tells the classes apart in whole images at the native size. Its map
is that direction applied to every cell, so it answers "which class does this cell look like" rather than "is the
object here", and `camloc.explain`'s default zoom shows it magnified windows it never saw. Four refits, each from
the plain probe and the same training images (no boxes: a user has none):

- `window_refit` (idea a): add the pooled features of the very windows explain's zoom takes for each training
  image's true class (`camloc.explainer.passes.zoom_plan`, passed at `Zoom.size`), same label; refit; twice.
- `peak_crop_refit` (idea a, augmentation): add square crops of 64-160 px centred on the peak of the true class's
  classification-pass map, passed at `Zoom.size` (the zoom's magnifications), same label; refit.
- `background_refit` (idea b): a third "background" class from crops of the same sizes away from the map's box;
  the probe's rows are w_c - w_background.
- `fit_cells` (the cell fit, below).

The cell fit trains the same linear layer on the views explain looks at, cell by cell, labelled by the probe's own
maps (no boxes are needed):

1. For every training image, the probe's map of its true class (round 0: the classification pass, upsampled to
   the image; later rounds: explain's default map, the zoom's composite) gives a box by the default rule.
2. Views: the whole image at the native size, and square windows around that box (`camloc.boxes.zoom_window`,
   side = `expands` x the box's longer side) at the zoom's pass size (`Zoom.size`), as explain passes them.
3. Each view's feature cells (the CAM's cells) are labelled by the map at their centre: at least `object_level` of
   the map's maximum -> the image's class; below `background_level` -> "background"; in between: left out.
4. One logistic fit of the linear layer (features standardised): the labelled cells against K classes +
   background (multinomial, balanced class weights) plus, weighted by `image_weight`, the training images' pooled
   features against the K classes (the plain probe's objective, so that whole images stay classified: the cells
   alone give directions whose sum over many background cells swamps a small object), and an L2 penalty as
   scikit-learn's C. Class c's row of the probe becomes w_c - w_background (bias likewise): its map is the cell's
   log-odds of class c against background, below zero away from the object, and the softmax over the K rows is
   the fit's softmax over the K classes.

`rounds` repeats 1-4, each round labelled by the previous round's maps. Every step keeps the model a GAP + linear
net, so the CAM identity (mean map + bias = logit) holds exactly. What it does and does not reach on the issue's
case is measured in docs/probe.md (`python benchmarks/probe_maps.py --fits`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from camloc.boxes import DEFAULT_BOX_RULE, boxes_from_maps, zoom_window
from camloc.engine import upsample
from camloc.errors import InputError
from camloc.explainer.passes import explain
from camloc.io import as_rgb_image
from camloc.models.adapters import get_adapter
from camloc.models.zoo import info_of
from camloc.probe.views import cell_features
from camloc.zoom import DEFAULT_ZOOM

log = logging.getLogger("camloc")

ImageSource = str | PathLike | Image.Image | np.ndarray  # what as_rgb_image decodes


@dataclass(frozen=True)
class CellFit:
    """Settings of the cell fit (module docstring): rounds of relabelling, window expansions, the label levels
    (fractions of each map's maximum), the logistic fit's C, weight of the images' term and L-BFGS iterations,
    and at most `max_background` background cells kept per image and round (a seeded random subset: background
    cells outnumber object cells ten to one)."""

    rounds: int = 2
    expands: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    object_level: float = 0.8
    background_level: float = 0.2
    C: float = 1.0
    max_background: int = 256
    max_iter: int = 500
    image_weight: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or not self.expands or min(self.expands) <= 0:
            raise InputError("cell fit: rounds must be >= 1 and the window expansions positive")
        if not 0 <= self.background_level < self.object_level <= 1:
            raise InputError("cell fit: levels must satisfy 0 <= background_level < object_level <= 1")
        if self.C <= 0 or self.image_weight < 0 or self.max_background < 1 or self.max_iter < 1:
            raise InputError("cell fit: C must be positive, image_weight >= 0, max_background and max_iter >= 1")


DEFAULT_CELL_FIT = CellFit()


def _label_cells(
    feats: np.ndarray, window: tuple[int, int, int, int], level: np.ndarray, label: int, background: int, fit: CellFit
) -> tuple[np.ndarray, np.ndarray]:
    """Cells (n, C) of one view's features (C, h, w) over `window` (x0, y0, x1, y1) of the image, labelled by the
    image-sized map `level` (H, W) at their centres -> (cells, labels); unlabelled cells left out."""
    c, h, w = feats.shape
    x0, y0, x1, y1 = window
    ys = np.minimum((y0 + (np.arange(h) + 0.5) * (y1 - y0) / h).astype(np.int64), level.shape[0] - 1)
    xs = np.minimum((x0 + (np.arange(w) + 0.5) * (x1 - x0) / w).astype(np.int64), level.shape[1] - 1)
    v = level[ys][:, xs].reshape(-1)
    peak = float(level.max())
    cells = feats.reshape(c, -1).T
    keep_obj = v >= fit.object_level * peak
    keep_bg = v < fit.background_level * peak
    return (
        np.concatenate([cells[keep_obj], cells[keep_bg]]),
        np.concatenate([np.full(int(keep_obj.sum()), label), np.full(int(keep_bg.sum()), background)]),
    )


def _round_cells(
    model: nn.Module, images: Sequence[ImageSource], labels: Sequence[int], first: bool, fit: CellFit, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """One round's labelled cells (n, C) and labels (n,) from the probe as it stands (module docstring, 1-3);
    images are decoded `batch` at a time."""
    rng = np.random.default_rng(fit.seed)
    background = int(get_adapter(model).weight.shape[0])
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for start in range(0, len(images), batch):
        chunk = [as_rgb_image(im) for im in images[start : start + batch]]
        chunk_labels = [int(c) for c in labels[start : start + batch]]
        res = explain(model, chunk, targets=[[c] for c in chunk_labels], map_sizes=() if first else None)
        for j, im in enumerate(chunk):
            # round 0: the classification pass's map; later: the map explain shows (the zoom's composite)
            level = upsample(res.raw[j].float(), (im.height, im.width))[0] if first else res.maps[j][0].float()
            box = boxes_from_maps(level[None], DEFAULT_BOX_RULE)[0]
            windows = [(0, 0, im.width, im.height)]
            sizes = [info_of(model).preprocess.input_size]
            if box[2] > box[0] and box[3] > box[1]:
                for e in fit.expands:
                    windows.append(zoom_window(box, im.height, im.width, e))
                    sizes.append(DEFAULT_ZOOM.size)
            views = [
                (im if k == 0 else im.crop(win), size) for k, (win, size) in enumerate(zip(windows, sizes, strict=True))
            ]
            level_np = level.cpu().numpy()
            cells, cell_labels = [], []
            for feats, win in zip(cell_features(model, views), windows, strict=True):
                c, y = _label_cells(feats, win, level_np, chunk_labels[j], background, fit)
                cells.append(c)
                cell_labels.append(y)
            c_all, y_all = np.concatenate(cells), np.concatenate(cell_labels)
            bg = np.flatnonzero(y_all == background)
            if len(bg) > fit.max_background:
                drop = np.setdiff1d(bg, rng.choice(bg, fit.max_background, replace=False))
                keep = np.setdiff1d(np.arange(len(y_all)), drop)
                c_all, y_all = c_all[keep], y_all[keep]
            xs.append(c_all.astype(np.float32))
            ys.append(y_all)
    return np.concatenate(xs), np.concatenate(ys)


def _fit_joint(
    cells: np.ndarray,
    cell_labels: np.ndarray,
    pooled: np.ndarray,
    labels: Sequence[int],
    k: int,
    fit: CellFit,
) -> tuple[np.ndarray, np.ndarray]:
    """The probe's weight (k, C) and bias (k,) from one joint logistic fit (module docstring, 4): cells (n, C)
    labelled 0..k (k: background; balanced) and the images' pooled features (N, C) against the k classes, each
    term a mean, plus an L2 penalty |W|^2 / (2 C n) (scikit-learn's C). Class c's row is w_c - w_background."""
    present = np.unique(cell_labels)
    if len(present) != k + 1:
        missing = sorted(set(range(k + 1)) - set(present.tolist()))
        raise InputError(
            f"cell fit: no cell labelled {'background' if k in missing else f'class {missing[0]}'}; "
            "the probe's maps give no object or no background to learn from"
        )
    mean = cells.mean(0, dtype=np.float64)
    scale = cells.std(0, dtype=np.float64)
    scale[scale < 1e-12] = 1.0
    z = torch.from_numpy((cells - mean) / scale)
    p = torch.from_numpy((np.asarray(pooled, np.float64) - mean) / scale)
    y_cells = torch.from_numpy(cell_labels.astype(np.int64))
    y_pooled = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    counts = torch.bincount(y_cells, minlength=k + 1).double()
    class_weight = len(y_cells) / ((k + 1) * counts)  # scikit-learn's "balanced"
    w = torch.zeros(k + 1, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=fit.max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9)
    penalty = 1.0 / (2.0 * fit.C * len(y_cells))
    ce = torch.nn.functional.cross_entropy

    def loss() -> Tensor:
        opt.zero_grad()
        cell_term = ce(z @ w.T + b, y_cells, weight=class_weight)
        image_term = ce(p @ w[:k].T + b[:k], y_pooled)
        out = cell_term + fit.image_weight * image_term + penalty * (w * w).sum()
        out.backward()
        return out

    opt.step(loss)
    with torch.no_grad():
        rows = ((w[:k] - w[k]) / torch.from_numpy(scale)).numpy()
        offsets = (b[:k] - b[k]).numpy() - rows @ mean
    return rows, offsets


def set_head(model: nn.Module, weight: np.ndarray, bias: np.ndarray) -> None:
    """Copy weight (K, C) and bias (K,) into the model's CAM-exact linear layer (of K outputs), in place."""
    linear = get_adapter(model).linear
    w, b = cast(Tensor, linear.weight), cast(Tensor, linear.bias)
    with torch.no_grad():
        w.copy_(torch.from_numpy(np.asarray(weight, np.float32)).to(w).reshape(w.shape))
        b.copy_(torch.from_numpy(np.asarray(bias, np.float32)).to(b))


def fit_cells(
    model: nn.Module,
    images: Sequence[ImageSource],
    labels: Sequence[int],
    pooled: np.ndarray,
    fit: CellFit = DEFAULT_CELL_FIT,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The cell fit (module docstring) of a probe whose head holds the pooled fit, on training images with their
    classes and pooled features (N, C). The model's head is updated after every round (the next round explains
    it). Returns the final weight (K, C), bias (K,) and a record for config.json."""
    k = int(get_adapter(model).weight.shape[0])
    weight = bias = np.zeros(0, np.float32)  # set by the first round (rounds >= 1)
    record: dict[str, Any] = {"settings": asdict(fit), "rounds": []}
    for r in range(fit.rounds):
        cells, cell_labels = _round_cells(model, images, labels, r == 0, fit, batch_size)
        rows, offsets = _fit_joint(cells, cell_labels, pooled, labels, k, fit)
        weight, bias = rows.astype(np.float32), offsets.astype(np.float32)
        set_head(model, weight, bias)
        pred = (pooled @ weight.T + bias).argmax(1)
        counts = np.bincount(cell_labels, minlength=k + 1)
        record["rounds"].append(
            {
                "object_cells": int(counts[:k].sum()),
                "background_cells": int(counts[k]),
                "train_accuracy": round(float((pred == np.asarray(labels)).mean()), 6),
            }
        )
        log.info("cell fit round %d: %s", r, record["rounds"][-1])
    return weight, bias, record


# ------------------------------------------------------------------------------------ the simpler refits


def pooled_at(model: nn.Module, images: Sequence[Image.Image], size: int) -> np.ndarray:
    """Pooled features (N, C) of images preprocessed at shorter side `size` (what the probe's head sees)."""
    return np.stack([f.mean((1, 2)) for f in cell_features(model, [(im, size) for im in images])])


def _true_class_maps(model: nn.Module, images: Sequence[Image.Image], labels: Sequence[int]) -> list[Tensor]:
    """Each image's classification-pass map of its class, upsampled to the image (H, W)."""
    res = explain(model, list(images), targets=[[int(c)] for c in labels], map_sizes=())
    return [upsample(res.raw[j].float(), (im.height, im.width))[0] for j, im in enumerate(images)]


def _refit(features: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The plain probe's fit (camloc.probe.fit.fit_linear: standardised logreg, C by cross-validation)."""
    from camloc.probe.fit import fit_linear

    fit = fit_linear(features, labels)
    return fit.weight, fit.bias


def window_refit(
    model: nn.Module, images: Sequence[Image.Image], labels: Sequence[int], pooled: np.ndarray, rounds: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Idea a: add the zoom's windows of the training images (true class), pooled at `Zoom.size`; refit, `rounds`
    times (each round takes the windows of the previous round's probe). Sets and returns the head."""
    from camloc.explainer.passes import zoom_plan

    feats, labs = pooled, list(labels)
    weight = bias = np.zeros(0, np.float32)
    for _ in range(rounds):
        crops, crop_labels = [], []
        for im, c, level in zip(images, labels, _true_class_maps(model, images, labels), strict=True):
            window = zoom_plan(level[None])[0]
            if window is not None:
                crops.append(im.crop(window))
                crop_labels.append(int(c))
        if crops:
            feats = np.concatenate([feats, pooled_at(model, crops, DEFAULT_ZOOM.size)])
            labs += crop_labels
        weight, bias = _refit(feats, labs)
        set_head(model, weight, bias)
    return weight, bias


def _square(cx: float, cy: float, side: int, width: int, height: int) -> tuple[int, int, int, int]:
    x0 = int(min(max(cx - side / 2, 0), width - side))
    y0 = int(min(max(cy - side / 2, 0), height - side))
    return x0, y0, x0 + side, y0 + side


CROP_SIDES = (64, 96, 128, 160)  # at Zoom.size 320: the zoom's magnifications 2-5x


def peak_crop_refit(
    model: nn.Module, images: Sequence[Image.Image], labels: Sequence[int], pooled: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Idea a as augmentation: crops of `CROP_SIDES` px centred on the true class's map peak, pooled at
    `Zoom.size`, same label; refit. Sets and returns the head."""
    crops, crop_labels = [], []
    for im, c, level in zip(images, labels, _true_class_maps(model, images, labels), strict=True):
        cy, cx = divmod(int(level.argmax()), level.shape[1])
        for side in CROP_SIDES:
            crops.append(im.crop(_square(cx, cy, side, im.width, im.height)))
            crop_labels.append(int(c))
    weight, bias = _refit(
        np.concatenate([pooled, pooled_at(model, crops, DEFAULT_ZOOM.size)]), list(labels) + crop_labels
    )
    set_head(model, weight, bias)
    return weight, bias


def background_refit(
    model: nn.Module, images: Sequence[Image.Image], labels: Sequence[int], pooled: np.ndarray, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Idea b: a "background" class from crops of `CROP_SIDES` px that miss the true class's box (20 random tries
    per size), pooled at `Zoom.size`; a K + 1 class fit, rows w_c - w_background. Sets and returns the head."""
    rng = np.random.default_rng(seed)
    k = int(get_adapter(model).weight.shape[0])
    crops = []
    for im, level in zip(images, _true_class_maps(model, images, labels), strict=True):
        x0, y0, x1, y1 = boxes_from_maps(level[None])[0].tolist()
        for side in CROP_SIDES:
            for _ in range(20):
                cx, cy = (float(v) for v in rng.integers(0, [im.width - side + 1, im.height - side + 1]))
                if cx + side <= x0 or cx >= x1 or cy + side <= y0 or cy >= y1:
                    crops.append(im.crop((int(cx), int(cy), int(cx) + side, int(cy) + side)))
                    break
    weight, bias = _refit(
        np.concatenate([pooled, pooled_at(model, crops, DEFAULT_ZOOM.size)]), list(labels) + [k] * len(crops)
    )
    weight, bias = weight[:k] - weight[k], bias[:k] - bias[k]
    set_head(model, weight, bias)
    return weight, bias
