"""The probe classifier "cells": rows fitted on feature cells labelled by boxes the training images draw themselves.

Why (issue 11, item 6; docs/probe.md): at the native size every cell of the last feature map carries the image's
class (its receptive field covers the image), so a row fitted on pooled features, or on cells labelled by their
image, is free to read context and lights up far from the object. Fitted on cells labelled by *boxes* (object
cells against background cells) the same linear layer boxes small objects well. A user has no boxes, so the
training images draw them (`camloc.probe.contrast`: where an image's cells are near its own class's cells and far
from the other classes'):

1. one box per training image from the contrast of its cells (box-free: classes only);
2. views of each image: the whole image at the native size, and square windows of `expands` times the box's
   longer side (`camloc.boxes.zoom_window`) at the zoom's pass size, as explain's zoom looks at objects;
3. each view's feature cells are labelled by where their centres fall: inside the box shrunk to `shrink` of its
   sides -> the image's class; outside the box grown by 1 / `shrink` -> background; between -> left out;
4. one multinomial logistic regression on the standardised cells, K classes + background (balanced class
   weights, scikit-learn's C); class c's row becomes w_c - w_background, its bias likewise.

The model stays GAP + one linear layer, so the CAM identity holds exactly; each class map is the cell's log-odds
of that class against background.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch import nn
from tqdm import tqdm

from camloc.boxes import zoom_window
from camloc.errors import InputError
from camloc.io import as_rgb_image
from camloc.models.zoo import info_of
from camloc.probe.contrast import DEFAULT_CONTRAST, ContrastBank, ContrastSettings, contrast_bank
from camloc.probe.views import ImageSource, cell_features
from camloc.zoom import DEFAULT_ZOOM

Box = tuple[float, float, float, float]
Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class CellSettings:
    """The cell fit's settings (module docstring): window expansions, the label box's shrink, the logistic fit's C,
    at most `max_background` background cells kept per image (a seeded random subset: they outnumber object cells),
    and images per batch. The defaults are those measured in docs/probe.md."""

    expands: tuple[float, ...] = (2.0, 2.7)
    shrink: float = 0.5
    C: float = 0.01
    max_background: int = 128
    batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.expands or min(self.expands) <= 0 or not 0 < self.shrink <= 1:
            raise InputError("cell fit: window expansions must be positive and shrink in (0, 1]")
        if self.C <= 0 or self.max_background < 1 or self.batch < 1:
            raise InputError("cell fit: C must be positive, max_background and batch at least 1")


DEFAULT_CELLS = CellSettings()


def scaled_box(box: Box, factor: float) -> Box:
    """`box` (x0, y0, x1, y1) scaled by `factor` about its centre."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def cell_centres(window: Window, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates (h, w) of the centres of an h x w feature map's cells over `window`."""
    x0, y0, x1, y1 = window
    ys = y0 + (np.arange(h) + 0.5) * (y1 - y0) / h
    xs = x0 + (np.arange(w) + 0.5) * (x1 - x0) / w
    return np.meshgrid(ys, xs, indexing="ij")


def inside(box: Box, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Which points (ys, xs) lie in `box`."""
    return (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3])


def label_cells(
    feats: np.ndarray, window: Window, box: Box, label: int, background: int, shrink: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cells (n, C) of one view's features (C, h, w) over `window`, labelled by `box` (step 3 of the module
    docstring) -> (cells, labels); the cells between the two boxes are left out."""
    c, h, w = feats.shape
    ys, xs = cell_centres(window, h, w)
    obj = inside(scaled_box(box, shrink), ys, xs).reshape(-1)
    bg = ~inside(scaled_box(box, 1.0 / shrink), ys, xs).reshape(-1)
    cells = feats.reshape(c, -1).T
    return (
        np.concatenate([cells[obj], cells[bg]]),
        np.concatenate([np.full(int(obj.sum()), label), np.full(int(bg.sum()), background)]),
    )


def image_cells(
    model: nn.Module, image: Image.Image, box: Box, label: int, background: int, settings: CellSettings
) -> tuple[np.ndarray, np.ndarray]:
    """One training image's labelled cells over its views (step 2) -> cells (n, C) float32 and labels (n,), at most
    `max_background` of them background."""
    x0, y0, x1, y1 = box
    windows: list[Window] = [(0, 0, image.width, image.height)]
    sizes = [info_of(model).preprocess.input_size]
    if x1 > x0 and y1 > y0:
        for e in settings.expands:
            windows.append(zoom_window(np.asarray(box), image.height, image.width, e))
            sizes.append(DEFAULT_ZOOM.size)
    views = [(image if k == 0 else image.crop(win), s) for k, (win, s) in enumerate(zip(windows, sizes, strict=True))]
    cells, labels = zip(
        *(
            label_cells(f, win, box, label, background, settings.shrink)
            for f, win in zip(cell_features(model, views), windows, strict=True)
        ),
        strict=True,
    )
    x, y = np.concatenate(cells), np.concatenate(labels)
    bg = np.flatnonzero(y == background)
    if len(bg) > settings.max_background:
        rng = np.random.default_rng([settings.seed, label, image.width, image.height, len(bg)])
        drop = rng.choice(bg, len(bg) - settings.max_background, replace=False)
        keep = np.setdiff1d(np.arange(len(y)), drop)
        x, y = x[keep], y[keep]
    return x, y


def fit_rows(cells: np.ndarray, labels: np.ndarray, n_classes: int, C: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: logistic regression of cells (n, C) on labels 0..K (K: background), features standardised (folded
    back in) -> the probe's weight (K, C) and bias (K,), each row against the background's."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    present = np.unique(labels)
    if len(present) != n_classes + 1:
        missing = sorted(set(range(n_classes + 1)) - set(present.tolist()))
        raise InputError(f"cell fit: no labelled cells for class(es) {missing} (every image's box was empty?)")
    x = np.asarray(cells, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((x - mean) / scale, labels)
    weight = clf.coef_ / scale
    bias = clf.intercept_ - weight @ mean
    return weight[:n_classes] - weight[n_classes], bias[:n_classes] - bias[n_classes]


def labelled_cells(
    model: nn.Module,
    sources: Sequence[ImageSource],
    labels: Sequence[int],
    n_classes: int,
    settings: CellSettings = DEFAULT_CELLS,
    contrast: ContrastSettings = DEFAULT_CONTRAST,
    progress: bool = False,
    *,
    bank: ContrastBank | None = None,
    only: Sequence[int] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Steps 1-3 with `model`'s backbone (its head is not read): each image's labelled cells (n, C) and labels (n,)
    of its views, boxed by the contrast. `bank`: the contrast's reference bank when already built; `only`: the
    indices of the images to label (default all; the result follows their order). Images are decoded a batch at
    a time; `progress`: a bar on stderr."""
    bank = bank if bank is not None else contrast_bank(model, sources, labels, contrast, progress)
    todo = list(range(len(sources))) if only is None else list(only)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    bar = tqdm(total=len(todo), desc="cells", unit="img", disable=not progress, file=sys.stderr)
    for start in range(0, len(todo), settings.batch):
        idx = todo[start : start + settings.batch]
        chunk = [as_rgb_image(sources[i]) for i in idx]
        chunk_labels = [int(labels[i]) for i in idx]
        boxes = bank.boxes(model, chunk, chunk_labels, idx, contrast)
        for im, box, c in zip(chunk, boxes.astype(float).tolist(), chunk_labels, strict=True):
            out.append(image_cells(model, im, (box[0], box[1], box[2], box[3]), c, n_classes, settings))
        bar.update(len(chunk))
    bar.close()
    return out


def fit_image_cells(
    per_image: Sequence[tuple[np.ndarray, np.ndarray]], n_classes: int, C: float
) -> tuple[np.ndarray, np.ndarray]:
    """Step 4 on the labelled cells of some images -> weight (K, C) and bias (K,) float64."""
    return fit_rows(np.concatenate([x for x, _ in per_image]), np.concatenate([y for _, y in per_image]), n_classes, C)


Split = tuple[np.ndarray, np.ndarray]


def image_folds(labels: Sequence[int], folds: int, seed: int = 0) -> list[Split]:
    """Stratified, shuffled (train, held-out) index splits over images: `folds`, or fewer when a class has fewer
    images. Raises `InputError` when a class has a single image."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels, dtype=np.int64)
    n_splits = int(min(folds, np.bincount(y).min()))
    if n_splits < 2:
        raise InputError("every class needs at least 2 images to cross-validate the cell fit")
    return list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def held_out_predictions(
    per_image: Sequence[tuple[np.ndarray, np.ndarray]],
    pooled: np.ndarray,
    n_classes: int,
    C: float,
    splits: Sequence[Split],
    progress: bool = False,
) -> np.ndarray:
    """Each image's class as predicted by the cell fit on the other folds' cells: rows fitted on the training
    images of each split, the held-out images classified by their pooled features `pooled` (N, C) as the probe
    would (logits = pooled @ weight.T + bias) -> (N,) int64. `progress`: a bar over the folds on stderr."""
    predicted = np.full(len(pooled), -1, dtype=np.int64)
    for train, held in tqdm(splits, desc="cross-validation", disable=not progress, file=sys.stderr):
        weight, bias = fit_image_cells([per_image[i] for i in train], n_classes, C)
        predicted[held] = (pooled[held] @ weight.T + bias).argmax(axis=1)
    return predicted


def cross_validated_accuracy(
    per_image: Sequence[tuple[np.ndarray, np.ndarray]],
    pooled: np.ndarray,
    labels: Sequence[int],
    n_classes: int,
    C: float,
    folds: int,
    seed: int = 0,
    progress: bool = False,
) -> tuple[float, int]:
    """Held-out classification accuracy of the cell fit over `image_folds` (`held_out_predictions`)
    -> (accuracy, folds used)."""
    splits = image_folds(labels, folds, seed)
    predicted = held_out_predictions(per_image, pooled, n_classes, C, splits, progress)
    return float((predicted == np.asarray(labels)).mean()), len(splits)
