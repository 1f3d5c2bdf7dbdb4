"""GAP surgery (Zhou et al. 2016, sec. 2) for classifiers whose heads have several FC layers.

AlexNet, VGG and GoogLeNet end in pooling and fully connected layers, so CAM cannot read them. The paper removes
everything after the last kept conv (AlexNet: conv5, VGG16: conv5_3, GoogLeNet: inception4e), adds one 3x3 conv of
1024 units (+ ReLU), global average pooling and one linear layer, and fine-tunes. Here the kept part is taken
from the given torchvision module, so its weights (e.g. loaded from a user checkpoint) come along; nothing is
downloaded. The result has the timm-style interface and is CAM-exact (`camloc.models.adapters.get_adapter`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import Tensor, nn

from camloc.errors import InputError
from camloc.models.gap_head import GapHeadMixin
from camloc.models.registry import register_architecture

BASES = ("alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "googlenet")
GOOGLENET_KEEP = (
    "conv1",
    "maxpool1",
    "conv2",
    "conv3",
    "maxpool2",
    "inception3a",
    "inception3b",
    "maxpool3",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
)


class GoogLeNetInput(nn.Module):
    """torchvision GoogLeNet's `transform_input` (ImageNet-normalised input -> the Inception scaling)."""

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) ImageNet-normalised -> (B, 3, H, W) as torchvision's GoogLeNet scales its input."""
        ch0 = x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        ch1 = x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        ch2 = x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((ch0, ch1, ch2), 1)


class GapSurgeryNet(GapHeadMixin, nn.Module):
    """Kept conv trunk -> 3x3 conv (1024) + ReLU -> global average pooling -> one linear layer."""

    def __init__(self, trunk: nn.Module, trunk_channels: int, num_classes: int, width: int = 1024) -> None:
        super().__init__()
        self.features = trunk
        self.extra = nn.Sequential(nn.Conv2d(trunk_channels, width, 3, padding=1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(width, num_classes)
        self.num_classes, self.num_features = num_classes, width
        conv = self.extra[0]
        assert isinstance(conv, nn.Conv2d)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) -> the map GAP pools, (B, width, h, w) after the ReLU (h, w: the trunk's output grid)."""
        return self.extra(self.features(x))


def trunk_of(model: nn.Module) -> tuple[nn.Module, int]:
    """The conv part the paper keeps, and its number of output channels."""
    if isinstance(model, (torchvision.models.AlexNet, torchvision.models.VGG)):
        layers = list(model.features.children())
        if not isinstance(layers[-1], nn.MaxPool2d):
            raise InputError(f"{type(model).__name__}'s features do not end in max pooling; not a torchvision layout")
        trunk = nn.Sequential(*layers[:-1])  # keep indices: keys stay features.<i>.* as in torchvision
        channels = [m.out_channels for m in layers if isinstance(m, nn.Conv2d)][-1]
        return trunk, channels
    if isinstance(model, torchvision.models.GoogLeNet):
        parts: list[tuple[str, nn.Module]] = []
        if getattr(model, "transform_input", False):
            parts.append(("transform_input", GoogLeNetInput()))
        parts += [(name, getattr(model, name)) for name in GOOGLENET_KEEP]
        return nn.Sequential(OrderedDict(parts)), 832
    raise InputError(f"GAP surgery knows torchvision AlexNet, VGG and GoogLeNet, not {type(model).__name__}")


def gap_surgery(model: nn.Module, num_classes: int, width: int = 1024) -> GapSurgeryNet:
    """The paper's GAP version of `model`, sharing the kept layers (and their weights) with it."""
    trunk, channels = trunk_of(model)
    return GapSurgeryNet(trunk, channels, num_classes, width)


def torchvision_base(base: str, transform_input: bool = False) -> nn.Module:
    """An untrained torchvision base by name (no download)."""
    if base not in BASES:
        raise InputError(f"unknown surgery base '{base}'; choose one of {', '.join(BASES)}")
    if base == "googlenet":
        return torchvision.models.googlenet(
            weights=None, aux_logits=False, init_weights=True, transform_input=transform_input
        )
    return torchvision.models.get_model(base, weights=None)


@register_architecture("gap_surgery")
def gap_surgery_arch(
    base: str = "vgg16", num_classes: int = 1000, width: int = 1024, transform_input: bool = False
) -> GapSurgeryNet:
    """`gap_surgery` of an untrained torchvision `base` (what checkpoints of surgery nets rebuild)."""
    return gap_surgery(torchvision_base(base, transform_input), num_classes, width)
