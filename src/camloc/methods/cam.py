"""CAM (Zhou et al., CVPR 2016): CAM_c = sum_k w_ck f_k, from one forward pass, every class at once.

With a LayerNorm / RMSNorm of the pooled vector in the head (ConvNeXt, ViT / EVA with `fc_norm`) the map is
CAM_c = s sum_k w'_ck f_k with per-image s = 1 / sigma (`CamAdapter.maps`, docs/methods.md): still exact.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camloc.methods.base import MapMethod, input_layout, register_method, select_classes
from camloc.models.adapters import get_adapter


@register_method("cam")
class CAM(MapMethod):
    """Class activation maps of a GAP + linear classifier: one forward pass and one einsum, no gradients.

    `layer` and `linear_layer` (optional, `named_modules()` names) give the pooled feature layer and the linear
    layer of a user's module that camloc cannot analyse by itself; the pair is still verified numerically.
    `differentiable=True` keeps the autograd graph (maps usable in a loss), also under a caller's `no_grad`.
    """

    name = "cam"

    def __init__(
        self, layer: str | None = None, *, linear_layer: str | None = None, differentiable: bool = False
    ) -> None:
        super().__init__(layer=layer)
        self.linear_layer = linear_layer
        self.differentiable = differentiable

    def run(
        self, model: nn.Module, x: Tensor, classes: Tensor | None = None, top_k: int = 5
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C_in, H, W) -> (logits (B, K), classes (B, k), CAMs (B, k, h, w) at the pooled layer), one pass."""
        adapter = get_adapter(model, feature_layer=self.layer, linear_layer=self.linear_layer)
        with torch.set_grad_enabled(self.differentiable):
            features, logits = adapter.forward(input_layout(x, self.channels_last))
            chosen = select_classes(logits, classes, top_k)
            return logits, chosen, adapter.maps(features, chosen)

    def layer_name(self, model: nn.Module) -> str:
        """The pooled feature layer ("forward_features" for a timm model read through its own two halves)."""
        adapter = get_adapter(model, feature_layer=self.layer, linear_layer=self.linear_layer)
        return adapter.feature_layer or "forward_features"

    def maps_only(self, model: nn.Module, x: Tensor, classes: Tensor) -> Tensor:
        """CAMs (B, k, h, w) of given classes (B, k) for x (B, C_in, H, W) at another input size (no logits
        needed)."""
        adapter = get_adapter(model, feature_layer=self.layer, linear_layer=self.linear_layer)
        with torch.set_grad_enabled(self.differentiable):
            return adapter.maps(adapter.features(input_layout(x, self.channels_last)), classes)
