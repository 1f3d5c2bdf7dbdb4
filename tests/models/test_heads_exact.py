"""CAM identity mean_xy CAM_c + b'_c == logit_c on the classifier families people use now (random weights, no
downloads), the pooled-vector norm derivation on a hand-built head, token reshaping against timm's own, and the
refusals (class token, attention pooling, MobileNetV3's conv head) with their reason and the method to use."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from camloc.engine import check_identity
from camloc.methods import CAM
from camloc.models.adapters import HeadError, get_adapter
from camloc.models.tokens import MapLayout, fixed_input_size, infer_layout

pytestmark = pytest.mark.usefixtures("one_thread")


def _scaled(model: nn.Module, gain: float = 30.0) -> nn.Module:
    """Random weights give logits near 0; a larger classifier makes the identity a test of real numbers."""
    torch.manual_seed(0)
    with torch.no_grad():
        clf = get_adapter(model).linear
        clf.weight.mul_(gain)
        if clf.bias is not None:
            clf.bias.normal_()
    return model.eval()


def _identity_error(model: nn.Module, x: torch.Tensor, k: int = 3) -> tuple[float, float, torch.Tensor]:
    """(largest |mean CAM + b' - logit| over the top-k of each image, largest |logit|, raw maps)."""
    logits, classes, raw = CAM().run(model, x, top_k=k)
    err = float(check_identity(raw, logits, classes, get_adapter(model).cam_bias))
    return err, float(logits.gather(1, classes).abs().max()), raw


# name, timm kwargs, input (H, W), feature grid (h, w), pooled-vector norm class ('' = none)
TIMM_EXACT = [
    ("convnext_tiny", {}, (64, 96), (2, 3), "LayerNorm2d"),
    pytest.param("swin_tiny_patch4_window7_224", {}, (224, 224), (7, 7), "", marks=pytest.mark.slow),  # ~5 s
    ("vit_small_patch16_224", {"global_pool": "avg", "img_size": 64}, (64, 64), (4, 4), "LayerNorm"),
    ("vit_small_patch16_224", {"global_pool": "avg", "fc_norm": False, "img_size": 64}, (64, 64), (4, 4), ""),
    (
        "vit_small_patch16_224",
        {"global_pool": "avg", "dynamic_img_size": True, "reg_tokens": 4, "img_size": 64},
        (48, 80),
        (3, 5),
        "LayerNorm",
    ),
    (
        "eva02_tiny_patch14_224",
        {"global_pool": "avg", "num_classes": 10, "img_size": 56},
        (56, 56),
        (4, 4),
        "LayerNorm",
    ),
    ("tf_efficientnetv2_b0", {}, (64, 96), (2, 3), ""),
    ("regnetx_002", {}, (64, 96), (2, 3), ""),
    ("resnet18", {}, (64, 96), (2, 3), ""),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "grid", "norm"), TIMM_EXACT, ids=lambda v: v if isinstance(v, str) and "_" in v else None
)
def test_timm_families_are_cam_exact(name, kwargs, size, grid, norm):
    model = _scaled(timm.create_model(name, pretrained=False, **kwargs))
    adapter = get_adapter(model)
    assert type(adapter.norm).__name__ == norm if norm else adapter.norm is None
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    err, scale, raw = _identity_error(model, x)
    assert raw.shape == (2, 3, *grid)
    assert scale > 1.0  # a real logit, not ~0
    assert err <= 2e-5 * scale, (err, scale)


@pytest.mark.parametrize(
    "build", [torchvision.models.convnext_tiny, pytest.param(torchvision.models.swin_t, marks=pytest.mark.slow)]
)
def test_torchvision_convnext_and_swin_are_cam_exact(build):
    model = _scaled(build())
    adapter = get_adapter(model)
    # torchvision ConvNeXt: avgpool -> classifier (LayerNorm2d, Flatten, Linear); Swin: norm -> permute -> avgpool
    assert (adapter.feature_layer, type(adapter.norm).__name__) in (
        ("features", "LayerNorm2d"),
        ("permute", "NoneType"),
    )
    err, scale, raw = _identity_error(model, torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2)))
    assert raw.shape == (1, 3, 7, 7) and scale > 1.0
    assert err <= 2e-5 * scale


class NormHead(nn.Module):
    """conv features -> mean -> LayerNorm (affine) -> linear: the head the derivation is about."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 5, 3, padding=1)
        self.norm = norm
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.features(x).mean(dim=(2, 3))))


@pytest.mark.parametrize("norm", [nn.LayerNorm(5, eps=1e-3), nn.RMSNorm(5, eps=1e-3)])
def test_pooled_norm_map_is_the_derived_formula(norm):
    """M_c = (1/sigma) sum_k W_ck gamma_k (f_k - mean_j f_j) [LayerNorm; RMSNorm: no centering, sigma = rms],
    b'_c = b_c + sum_k W_ck beta_k, computed here by hand from the definitions."""
    torch.manual_seed(0)
    net = NormHead(norm).eval()
    with torch.no_grad():
        net.norm.weight.uniform_(0.5, 2.0)
        if getattr(net.norm, "bias", None) is not None:
            net.norm.bias.normal_()
    x = torch.randn(2, 3, 6, 5)
    adapter = get_adapter(net)
    assert adapter.feature_layer == "features" and adapter.norm is net.norm
    with torch.no_grad():
        f = net.features(x)  # (2, 5, 6, 5)
        p = f.mean(dim=(2, 3))
        layer_norm = isinstance(norm, nn.LayerNorm)
        centred = f - f.mean(dim=1, keepdim=True) if layer_norm else f
        second = p.var(dim=1, unbiased=False) if layer_norm else p.pow(2).mean(dim=1)
        sigma = torch.sqrt(second + 1e-3)
        w = net.fc.weight * net.norm.weight  # (4, 5)
        by_hand = torch.einsum("bchw,kc->bkhw", centred, w) / sigma[:, None, None, None]
        bias = net.fc.bias + (net.fc.weight @ net.norm.bias if layer_norm else 0)
        ours = adapter.maps(f)
        torch.testing.assert_close(ours, by_hand, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.mean(dim=(2, 3)) + bias, net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(adapter.cam_bias, bias)
        torch.testing.assert_close(adapter.head_input(f), net.norm(p))  # what a probe fits a new linear layer on
        # without the norm's share the identity fails: the derivation is what makes the map exact
        naive = torch.einsum("bchw,kc->bkhw", f, net.fc.weight).mean(dim=(2, 3)) + net.fc.bias
        assert float((naive - net(x)).abs().max()) > 0.1


def test_tokens_reshaped_like_timm_itself():
    """Our grid of a ViT block's tokens (prefix dropped) equals timm's own NCHW intermediates, rectangles too."""
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_small_patch16_224", pretrained=False, dynamic_img_size=True, reg_tokens=4, img_size=64, depth=2
    ).eval()
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        tokens = model.forward_features(x)  # (1, 5 + 15, C), includes the final norm
        layout = infer_layout(tokens, model, (48, 80))
        assert layout == MapLayout("tokens", 5, (3, 5))
        theirs = model.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)[-1]
    torch.testing.assert_close(layout.apply(tokens), theirs)


def test_swin_channels_last_and_fixed_size():
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
    assert fixed_input_size(model) == (224, 224)
    assert fixed_input_size(timm.create_model("resnet18")) is None
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = model.forward_features(x)  # (1, 7, 7, 768)
        layout = infer_layout(feats, model, (224, 224))
        theirs = model.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)[-1]
    assert layout.kind == "nhwc"
    torch.testing.assert_close(layout.apply(feats), theirs)


@pytest.mark.parametrize(
    ("build", "expect"),
    [
        (lambda: timm.create_model("deit_small_patch16_224", img_size=64), "classifies its class token"),
        (lambda: timm.create_model("vit_small_patch16_224", img_size=64, global_pool="map"), "attention"),
        (lambda: timm.create_model("mobilenetv3_small_050"), r"conv_head \(Conv2d\)"),
        (lambda: timm.create_model("convnext_atto", head_hidden_size=16), "not CAM-exact"),
    ],
)
def test_inexact_heads_refused_with_reason_and_method(build, expect):
    with pytest.raises(HeadError, match=expect) as err:
        get_adapter(build())
    assert "--method gradcam" in str(err.value)
