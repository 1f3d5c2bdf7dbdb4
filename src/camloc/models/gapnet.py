"""A small GAP CNN family whose last feature map's resolution is a parameter (final stride 2 .. 32).

Every net has the same layers (a stride-2 stem, then one stage per remaining width, each of two 3x3 conv-norm-ReLU
blocks); `final_stride` only decides how many stages downsample (the first log2(stride) - 1 stages), so the nets of
the resolution study differ in feature-map size, not in depth or width. The head is CAM-exact: global average
pooling and one linear layer. The interface follows timm (`forward_features`, `forward_head`, `get_classifier`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from camloc.errors import InputError
from camloc.models.gap_head import GapHeadMixin
from camloc.models.registry import register_architecture

NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


def conv_block(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential:
    """3x3 conv (no bias when normalised) -> norm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=norm == "none"), _norm(norm, cout), nn.ReLU(inplace=True)
    )


class GapNet(GapHeadMixin, nn.Module):
    """Conv stages -> (B, C, H/s, W/s) features -> global average pooling -> one linear layer."""

    def __init__(
        self,
        num_classes: int = 10,
        final_stride: int = 8,
        widths: Sequence[int] = (32, 64, 96, 128),
        in_chans: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        downs = final_stride.bit_length() - 1
        if final_stride < 2 or final_stride != 1 << downs or downs > len(widths):
            raise InputError(
                f"final_stride must be a power of two from 2 to {1 << len(widths)} for "
                f"{len(widths)} widths, got {final_stride}"
            )
        if norm not in NORMS:
            raise InputError(f"norm must be one of {', '.join(NORMS)}, got '{norm}'")
        self.final_stride, self.num_classes, self.num_features = final_stride, num_classes, widths[-1]
        layers = [conv_block(in_chans, widths[0], 2, norm)]
        for i in range(1, len(widths)):
            stride = 2 if i < downs else 1
            layers += [conv_block(widths[i - 1], widths[i], stride, norm), conv_block(widths[i], widths[i], 1, norm)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, C, H / final_stride, W / final_stride)."""
        return self.features(x)


@register_architecture("gapnet")
def gapnet(
    num_classes: int = 10,
    final_stride: int = 8,
    widths: Sequence[int] = (32, 64, 96, 128),
    in_chans: int = 3,
    norm: str = "batch",
) -> GapNet:
    """The GAP CNN of this module (the name `camloc.load` and checkpoints use)."""
    return GapNet(num_classes, final_stride, tuple(widths), in_chans, norm)


class BoxRegressor(nn.Module):
    """The fully supervised reference: a backbone's pooled features -> class logits and one box.

    The box is (x0, y0, x1, y1) as fractions of the input's width and height (sigmoid of a linear layer on the
    same pooled features), so it is the same backbone and cost as the CAM net, trained with boxes.
    """

    def __init__(self, backbone: GapNet) -> None:
        super().__init__()
        self.backbone = backbone
        self.box = nn.Linear(backbone.num_features, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C_in, H, W) -> (logits (B, K), boxes (B, 4) [x0, y0, x1, y1] as fractions of the width / height)."""
        pooled = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        return self.backbone.fc(pooled), torch.sigmoid(self.box(pooled))


@register_architecture("gapnet_boxreg")
def gapnet_boxreg(
    num_classes: int = 10,
    final_stride: int = 8,
    widths: Sequence[int] = (32, 64, 96, 128),
    in_chans: int = 3,
    norm: str = "batch",
) -> BoxRegressor:
    """A GapNet backbone with a box-regression head (returns (logits, boxes in [0, 1]))."""
    backbone = gapnet(num_classes, final_stride, widths, in_chans, norm)
    assert isinstance(backbone, GapNet)
    return BoxRegressor(backbone)
