"""The head every camloc-built GAP net shares: global average pooling and one linear layer `fc`, behind timm's
interface (`forward_features` / `forward_head` / `get_classifier` / `reset_classifier`), so that adapters treat
our nets exactly like timm's."""

from __future__ import annotations

from torch import Tensor, nn


class GapHeadMixin:
    """Adds GAP + `self.fc` to a module that defines `forward_features` and sets `num_features`."""

    fc: nn.Linear
    num_features: int
    num_classes: int

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, C, h, w) -> pooled (B, C) with pre_logits, else logits (B, K)."""
        pooled = features.mean(dim=(2, 3))
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C_in, H, W) -> logits (B, K): `forward_features`, then GAP and `fc`."""
        return self.forward_head(self.forward_features(x))  # type: ignore[attr-defined]

    def get_classifier(self) -> nn.Module:
        """The linear layer `fc` (timm's interface)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh `fc` for `num_classes` classes (timm's interface; the trunk is kept)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)
