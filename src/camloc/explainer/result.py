"""`Result`: what `camloc.explain` returns, shared by the writers, the runner, the server and evaluate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from camloc.models.zoo import ModelInfo


@dataclass
class Result:
    """What `explain` returns. Per-class fields are (B, k), best first; tensors live on the model's device.

    classes (B, k) int64; scores (B, k) (softmax or sigmoid) and logits (B, k) of those classes; raw (B, k, h, w)
    unnormalised maps at feature resolution; maps (B, k, H, W) in [0, 1] at each image's size; boxes (B, k, 4)
    int64 [x0, y0, x1, y1) (x1, y1 exclusive) in image pixels, None with boxes=False; all_logits (B, K);
    sizes: (H, W) of each image.

    `raw` and `maps` are stacked tensors when every image has the same size, else lists of per-image tensors;
    `classes`, `scores`, `logits` and `boxes` are lists of per-image tensors (k_i, ...) when images have different
    numbers of classes (`min_score`). Index by image (`res.classes[i]`) to work with either.
    `map_range` (B, k, 2) (a list of (k_i, 2) like `boxes`) holds each map's [min, max] before normalisation: the
    values the box rule's threshold refers to, so that a client holding `maps` can redraw a box at another
    threshold (the page of `camloc serve`).
    """

    classes: Tensor | list[Tensor]
    scores: Tensor | list[Tensor]
    logits: Tensor | list[Tensor]
    raw: Tensor | list[Tensor]
    maps: Tensor | list[Tensor]
    boxes: Tensor | list[Tensor] | None  # None when explain ran with boxes=False
    all_logits: Tensor
    sizes: list[tuple[int, int]]
    info: ModelInfo
    settings: dict[str, Any] = field(default_factory=dict)
    map_range: Tensor | list[Tensor] | None = None

    def __len__(self) -> int:
        return len(self.classes)

    def labels(self, i: int) -> list[str]:
        """Class names of image i's maps, in order."""
        return [self.info.label(int(c)) for c in self.classes[i]]
