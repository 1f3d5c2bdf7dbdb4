"""The CAM math: a hand-computed case, the identity on several architectures, post-processing edge cases."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from camloc.engine import (
    all_class_activation_maps,
    check_identity,
    class_activation_maps,
    combine_passes,
    interpolation_matrix,
    logits_from_features,
    normalize,
    upsample,
)
from camloc.models.adapters import get_adapter


def test_hand_computed_cam() -> None:
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, -1.0]]]])  # (1, 2, 2, 2)
    weight = torch.tensor([[1.0, 0.0], [2.0, -1.0], [0.5, 0.5]])  # 3 classes
    cams = class_activation_maps(features, weight, torch.tensor([[1, 2]]))
    assert torch.equal(cams[0, 0], torch.tensor([[2.0, 3.0], [6.0, 9.0]]))
    assert torch.equal(cams[0, 1], torch.tensor([[0.5, 1.5], [1.5, 1.5]]))
    bias = torch.tensor([0.1, -0.2, 0.3])
    logits = logits_from_features(features, weight, bias)
    assert torch.allclose(logits, torch.tensor([[2.6, 4.8, 1.55]]))
    assert float(check_identity(cams, logits, torch.tensor([[1, 2]]), bias)) < 1e-6
    every = all_class_activation_maps(features, weight)
    assert torch.equal(every[:, 1:], cams)


ARCHS = {
    "timm resnet18": lambda: timm.create_model("resnet18"),
    "timm efficientnet_b0": lambda: timm.create_model("efficientnet_b0"),
    "torchvision resnet18": lambda: torchvision.models.resnet18(),
    "torchvision densenet121": lambda: torchvision.models.densenet121(),
    "torchvision mobilenet_v2": lambda: torchvision.models.mobilenet_v2(),
    "torchvision shufflenet_v2": lambda: torchvision.models.shufflenet_v2_x0_5(),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_identity_random_weights(name: str) -> None:
    torch.manual_seed(0)
    model = ARCHS[name]().eval()
    adapter = get_adapter(model)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        features, logits = adapter.forward(x)
        reference = model(x)
        classes = logits.topk(5).indices
        raw = class_activation_maps(features, adapter.weight, classes)
    assert torch.allclose(logits, reference, atol=1e-5)
    scale = float(logits.abs().max())
    assert float(check_identity(raw, logits, classes, adapter.bias)) <= 1e-5 * max(scale, 1.0)


def test_identity_pretrained(default_model: torch.nn.Module) -> None:
    adapter = get_adapter(default_model)
    torch.manual_seed(1)
    x = torch.randn(3, 3, 224, 288)
    with torch.no_grad():
        features, logits = adapter.forward(x)
        classes = torch.arange(1000).expand(3, 1000)
        raw = class_activation_maps(features, adapter.weight, classes)
    assert raw.shape == (3, 1000, 7, 9)
    assert float(check_identity(raw, logits, classes, adapter.bias)) < 1e-4


def test_normalize_edge_cases() -> None:
    negative = -torch.rand(1, 1, 4, 4) - 1.0
    assert torch.equal(normalize(negative, relu=True), torch.zeros_like(negative))  # all clipped: no NaN
    constant = torch.full((1, 2, 3, 3), 7.0)
    assert torch.equal(normalize(constant), torch.zeros_like(constant))
    ramp = torch.arange(4.0).reshape(1, 1, 2, 2) - 1.0  # [-1, 0, 1, 2]
    assert torch.allclose(normalize(ramp), torch.tensor([[[[0.0, 1 / 3], [2 / 3, 1.0]]]]))
    assert torch.allclose(normalize(ramp, relu=True), torch.tensor([[[[0.0, 0.0], [0.5, 1.0]]]]))


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    out_h=st.integers(1, 300),
    out_w=st.integers(1, 300),
    seed=st.integers(0, 99),
)
def test_upsample_equals_interpolate(h: int, w: int, out_h: int, out_w: int, seed: int) -> None:
    """The matrix form gives F.interpolate's bilinear numbers (align_corners=False; also when shrinking)."""
    maps = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    reference = F.interpolate(maps, size=(out_h, out_w), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample(maps, (out_h, out_w)), reference, atol=1e-5, rtol=1e-5)
    weights = interpolation_matrix(out_h, h, torch.float64, torch.device("cpu"))
    torch.testing.assert_close(weights.sum(1), torch.ones(out_h, dtype=torch.float64))  # each row averages


def test_upsample_matches_interpolate_and_keeps_identity_size() -> None:
    maps = torch.rand(2, 3, 7, 9)
    up = upsample(maps, (70, 90))
    assert up.shape == (2, 3, 70, 90)
    assert upsample(maps, (7, 9)) is maps
    assert torch.allclose(up.mean(dim=(2, 3)), maps.mean(dim=(2, 3)), atol=0.05)


def test_combine_passes_hand_computed() -> None:
    a = torch.tensor([[[-2.0, 4.0]]])  # largest magnitude 4
    b = torch.tensor([[[1.0, -0.5]]])  # largest magnitude 1
    assert torch.equal(combine_passes([a]), a)  # one pass: untouched
    assert torch.equal(combine_passes([a], relu=True), torch.tensor([[[0.0, 4.0]]]))
    assert torch.allclose(combine_passes([a, b]), torch.tensor([[[(-0.5 + 1.0) / 2, (1.0 - 0.5) / 2]]]))
    assert torch.allclose(combine_passes([a, b], relu=True), torch.tensor([[[0.5, 0.5]]]))
