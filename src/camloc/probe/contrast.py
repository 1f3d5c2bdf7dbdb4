"""Box-free boxes for training images: where an image's cells look like its class's other images and unlike the
other classes' images (a k-nearest-neighbour contrast of feature cells).

Why (issue 11, item 6; docs/probe.md): the cells classifier (`camloc.probe.cells`) is as good as the boxes that
label its cells; with the true boxes it boxes 102 of 110 test objects. A linear read of a cell cannot tell the
object from the context (every cell of the last map carries the image's class), but the cell's *nearest
neighbours* can: a background cell has close neighbours in every class's images (the same clutter), an object
cell only among its own class's objects. For each cell x of an image of class c:

    score(x) = mean distance to its k nearest cells of other classes' images
             - mean distance to its k nearest cells of other images of class c

on L2-normalised features at shorter side `size` (twice the native 224: a 14 x 14 map). The score map, upsampled
to the image and clipped at zero, gives the box around the largest component above `threshold` of its max
(`camloc.boxes.box_from_map`). The neighbours are the cells of at most `max_reference` images, shared evenly
between the classes (a seeded subset, at least two per class), so the cost stays linear in the number of images.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from camloc.boxes import BoxRule, box_from_map
from camloc.errors import InputError
from camloc.io import as_rgb_image
from camloc.probe.views import ImageSource, cell_features


@dataclass(frozen=True)
class ContrastSettings:
    """The contrast's settings (module docstring): the views' shorter side, neighbours per side, the box threshold
    (fraction of the score map's max), reference images in all (`reference_images`), images per batch and the
    subset's seed."""

    size: int = 448
    k: int = 5
    threshold: float = 0.7
    max_reference: int = 64
    batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 32 or self.k < 1 or not 0 < self.threshold < 1 or self.max_reference < 2 or self.batch < 1:
            raise InputError("contrast boxes: size >= 32, k >= 1, threshold in (0, 1), max_reference >= 2, batch >= 1")


DEFAULT_CONTRAST = ContrastSettings()


def contrast_settings(threshold: float) -> ContrastSettings:
    """The default settings with another box threshold (`camloc probe fit --contrast-threshold`)."""
    if not 0 < threshold < 1:
        raise InputError(f"--contrast-threshold must be in (0, 1), got {threshold:g}")
    return replace(DEFAULT_CONTRAST, threshold=threshold)


def unit_maps(model: nn.Module, images: Sequence[Image.Image], size: int) -> list[torch.Tensor]:
    """Each image's feature map (C, h, w) at shorter side `size`, each cell scaled to unit length."""
    return [F.normalize(torch.from_numpy(f), dim=0) for f in cell_features(model, [(im, size) for im in images])]


def reference_images(labels: Sequence[int], most: int, seed: int) -> list[int]:
    """About `most` image indices in all, shared evenly between the classes (at least 2 per class; all of a class
    with fewer), a seeded random subset, in index order."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    per_class = max(2, most // max(1, len(classes)))
    chosen: list[int] = []
    for c in classes:
        idx = [i for i, y in enumerate(labels) if y == c]
        chosen += idx if len(idx) <= per_class else rng.choice(idx, per_class, replace=False).tolist()
    return sorted(chosen)


def contrast_scores(
    cells: torch.Tensor,
    label: int,
    image: int,
    bank: torch.Tensor,
    bank_class: torch.Tensor,
    bank_image: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Score (n,) of each of one image's cells (n, C) against the reference bank (m, C) of cells with their class
    and image: k-nearest distance to other classes minus k-nearest distance to the same class's other images."""
    own = (bank_class == label) & (bank_image != image)
    foreign = bank_class != label
    k_same, k_other = min(k, int(own.sum())), min(k, int(foreign.sum()))
    if k_same == 0 or k_other == 0:
        raise InputError("contrast boxes: every class needs images of its own (two or more) and other classes")
    d = torch.cdist(cells, bank)
    inf = torch.tensor(float("inf"))
    same = torch.where(own, d, inf)
    other = torch.where(foreign, d, inf)
    near_other = other.topk(k_other, dim=1, largest=False).values.mean(dim=1)
    near_same = same.topk(k_same, dim=1, largest=False).values.mean(dim=1)
    return near_other - near_same


@dataclass
class ContrastBank:
    """The reference cells (m, C), unit length, with each cell's class and image index, and the maps (C, h, w) of
    the reference images by index (reused when those images are boxed)."""

    cells: torch.Tensor
    classes: torch.Tensor
    images: torch.Tensor
    maps: dict[int, torch.Tensor]

    def score_maps(
        self,
        model: nn.Module,
        images: Sequence[Image.Image],
        labels: Sequence[int],
        indices: Sequence[int],
        settings: ContrastSettings,
    ) -> list[np.ndarray]:
        """Score maps (H, W) of decoded `images` (their indices into the training list, and classes), upsampled to
        each image and clipped at zero."""
        todo = [j for j, i in enumerate(indices) if i not in self.maps]
        fresh = dict(zip(todo, unit_maps(model, [images[j] for j in todo], settings.size), strict=True))
        out = []
        for j, (im, label, i) in enumerate(zip(images, labels, indices, strict=True)):
            unit = self.maps[i] if i in self.maps else fresh[j]
            _, h, w = unit.shape
            scores = contrast_scores(
                unit.flatten(1).T, int(label), i, self.cells, self.classes, self.images, settings.k
            )
            score_map = F.interpolate(scores.reshape(1, 1, h, w), size=(im.height, im.width), mode="bilinear")
            out.append(score_map[0, 0].clamp(min=0).numpy())
        return out

    def boxes(
        self,
        model: nn.Module,
        images: Sequence[Image.Image],
        labels: Sequence[int],
        indices: Sequence[int],
        settings: ContrastSettings,
    ) -> np.ndarray:
        """Boxes (n, 4) int64 of decoded `images`: `score_maps` boxed at `settings.threshold`."""
        maps = self.score_maps(model, images, labels, indices, settings)
        return boxes_of(maps, settings.threshold)


def boxes_of(score_maps: Sequence[np.ndarray], threshold: float) -> np.ndarray:
    """The box around the largest component above `threshold` of its max, for each score map: (n, 4) int64."""
    rule = BoxRule(threshold=threshold)
    return np.stack([box_from_map(m, rule) for m in score_maps]).astype(np.int64, copy=False)


def contrast_bank(
    model: nn.Module,
    sources: Sequence[ImageSource],
    labels: Sequence[int],
    settings: ContrastSettings = DEFAULT_CONTRAST,
    progress: bool = False,
) -> ContrastBank:
    """The reference bank: the cells of about `settings.max_reference` images (`reference_images`), decoded a batch
    at a time. `progress`: a progress bar on stderr."""
    ref = reference_images(labels, settings.max_reference, settings.seed)
    maps: dict[int, torch.Tensor] = {}
    with tqdm(total=len(ref), desc="contrast bank", unit="img", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(ref), settings.batch):
            chunk = ref[start : start + settings.batch]
            images = [as_rgb_image(sources[i]) for i in chunk]
            maps.update(zip(chunk, unit_maps(model, images, settings.size), strict=True))
            bar.update(len(chunk))
    cells = [maps[i].flatten(1).T for i in ref]
    return ContrastBank(
        torch.cat(cells),
        torch.cat([torch.full((len(c),), int(labels[i])) for i, c in zip(ref, cells, strict=True)]),
        torch.cat([torch.full((len(c),), i) for i, c in zip(ref, cells, strict=True)]),
        maps,
    )


def contrast_maps(
    model: nn.Module,
    sources: Sequence[ImageSource],
    labels: Sequence[int],
    settings: ContrastSettings = DEFAULT_CONTRAST,
) -> list[np.ndarray]:
    """The score map (H, W) of every image (`ContrastBank.score_maps`), decoded a batch at a time: to box at
    several thresholds (`boxes_of`) without scoring again. Holds every map: for sets that fit in memory."""
    bank = contrast_bank(model, sources, labels, settings)
    out: list[np.ndarray] = []
    for start in range(0, len(sources), settings.batch):
        idx = list(range(start, min(start + settings.batch, len(sources))))
        images = [as_rgb_image(sources[i]) for i in idx]
        out += bank.score_maps(model, images, [labels[i] for i in idx], idx, settings)
    return out


def contrast_boxes(
    model: nn.Module,
    sources: Sequence[ImageSource],
    labels: Sequence[int],
    settings: ContrastSettings = DEFAULT_CONTRAST,
) -> np.ndarray:
    """One box (x0, y0, x1, y1) per image, in its pixels, from the contrast of its cells (module docstring):
    (N, 4) int64."""
    return boxes_of(contrast_maps(model, sources, labels, settings), settings.threshold)
