"""`Result`: what `camloc.explain` returns, shared by the writers, the runner, the server and evaluate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from camloc.models.zoo import ModelInfo


@dataclass
class Result:
    """What `explain` returns. Per-class fields are (B, k), best first; tensors live on the model's device.

    `raw` and `maps` are stacked tensors when every image has the same size, else lists of per-image tensors.
    """

    classes: Tensor
    scores: Tensor
    logits: Tensor
    raw: Tensor | list[Tensor]
    maps: Tensor | list[Tensor]
    boxes: Tensor
    all_logits: Tensor
    sizes: list[tuple[int, int]]
    info: ModelInfo
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.classes.shape[0]

    def labels(self, i: int) -> list[str]:
        """Class names of image i's maps, in order."""
        return [self.info.label(int(c)) for c in self.classes[i]]
