"""camloc's CAM family against the peer libraries (pytorch-grad-cam, torchcam) on the same model, input and targets.

Tiny seeded nets at full resolution (no striding), so no peer resizes anything and maps compare element-wise:
raw maps against torchcam's `normalized=False` output, min-max normalised maps against pytorch-grad-cam's output.
The deliberate differences (docs/methods.md) are tested too: each is shown to be exactly the documented one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camloc.engine import normalize
from camloc.methods import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from camloc.methods.gradient import activations_and_gradients
from camloc.methods.layers import resolve_layer

pgc = pytest.importorskip("pytorch_grad_cam")
pgc_targets = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
torchcam = pytest.importorskip("torchcam.methods")

MID, LAST = "features.3", "features"  # a layer with spatially varying gradients; the CAM-exact feature layer


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """conv-ReLU x3 at full resolution (or stride 2 in the middle), GAP, one linear layer."""

    def __init__(self, stride: int = 1, classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, stride, 1),
            nn.ReLU(),
            nn.Conv2d(12, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def make(stride: int = 1, scale: float = 20.0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Model, input, per-image classes. `scale` multiplies the linear weights, hence every gradient: large enough
    that the peers' eps (pytorch-grad-cam's Grad-CAM++ adds 1e-6 to g^2 terms) stays below float tolerance."""
    torch.manual_seed(0)
    model = TinyNet(stride).eval()
    with torch.no_grad():
        model.fc.weight.mul_(scale)
    x = torch.randn(2, 3, 12, 12)
    classes = torch.tensor([[1, 4], [3, 0]])
    return model, x, classes


def ours_normalized(method, model, x, classes) -> torch.Tensor:
    return normalize(method.run(model, x, classes)[2])


def pgc_maps(cls, model, layer: str, x, classes) -> torch.Tensor:
    """pytorch-grad-cam's maps (B, k, H, W), one call per class column (its API takes one target per image)."""
    module = dict(model.named_modules())[layer]
    cam = cls(model=model, target_layers=[module])
    try:
        cols = [
            cam(input_tensor=x, targets=[pgc_targets.ClassifierOutputTarget(int(c)) for c in classes[:, j]])
            for j in range(classes.shape[1])
        ]
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(np.stack(cols, axis=1))


def torchcam_raw(cls, model, layer: str, x, classes, **kwargs) -> torch.Tensor:
    """torchcam's unnormalised maps (B, k, h, w)."""
    with cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
        cols = []
        for j in range(classes.shape[1]):
            scores = model(x)
            cols.append(extractor(class_idx=classes[:, j].tolist(), scores=scores, normalized=False)[0])
    return torch.stack(cols, dim=1).detach()


PGC = {
    GradCAM: "GradCAM",
    GradCAMPlusPlus: "GradCAMPlusPlus",
    XGradCAM: "XGradCAM",
    LayerCAM: "LayerCAM",
    ScoreCAM: "ScoreCAM",
}
TORCHCAM = {GradCAM: "GradCAM", XGradCAM: "XGradCAM", LayerCAM: "LayerCAM", ScoreCAM: "ScoreCAM"}


@pytest.mark.parametrize("layer", [MID, LAST])
@pytest.mark.parametrize("ours", list(PGC))
def test_matches_pytorch_grad_cam(ours, layer):
    model, x, classes = make(scale=1000.0 if ours is GradCAMPlusPlus else 20.0)
    theirs = pgc_maps(getattr(pgc, PGC[ours]), model, layer, x, classes)
    mine = ours_normalized(ours(layer=layer), model, x, classes)
    assert mine.shape == theirs.shape == (2, 2, 12, 12)
    assert float(theirs.amax()) > 0.99  # a real map, not all zeros
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("layer", [MID, LAST])
@pytest.mark.parametrize("ours", list(TORCHCAM))
def test_matches_torchcam(ours, layer):
    model, x, classes = make()
    theirs = torchcam_raw(getattr(torchcam, TORCHCAM[ours]), model, layer, x, classes)
    mine = ours(layer=layer).run(model, x, classes)[2]
    assert float(theirs.abs().amax()) > 0
    torch.testing.assert_close(mine, theirs, atol=1e-5 * float(theirs.abs().amax()), rtol=1e-4)


def test_cam_matches_torchcam():
    model, x, classes = make()
    theirs = torchcam_raw(torchcam.CAM, model, LAST, x, classes, fc_layer="fc")
    mine = CAM().run(model, x, classes)[2]
    assert float(mine.amin()) < 0 < float(mine.amax())  # signed maps: no ReLU in CAM, in either library
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_gradcampp_torchcam_difference_is_its_undivided_alpha():
    """Deliberate difference (a torchcam 0.5.0 bug we do not copy): its GradCAMpp divides `alpha[idx][mask]`
    in place, which is a copy made by boolean indexing, so alpha stays g^2 and its weights are
    sum_xy g^2 ReLU(g). Ours follow the paper (and pytorch-grad-cam). Shown on both layers."""
    model, x, classes = make()
    for layer in (MID, LAST):
        theirs = torchcam_raw(torchcam.GradCAMpp, model, layer, x, classes)
        _, _, a, g = activations_and_gradients(model, x, resolve_layer(model, layer), classes, 2)
        undivided = torch.einsum("bchw,bkc->bkhw", a, (g**2 * g.clamp(min=0)).sum(dim=(-2, -1))).clamp(min=0)
        torch.testing.assert_close(undivided, theirs, atol=1e-5 * float(theirs.amax()), rtol=1e-4)
        mine = GradCAMPlusPlus(layer=layer).run(model, x, classes)[2]
        assert (normalize(mine) - normalize(theirs)).abs().max() > 1e-2


def test_scorecam_upsampling_difference_with_pytorch_grad_cam(monkeypatch):
    """Deliberate difference: at a downsampled layer pytorch-grad-cam upsamples Score-CAM masks with
    align_corners=True; camloc uses align_corners=False everywhere. With that one thing changed they agree."""
    model, x, classes = make(stride=2)
    mine = ours_normalized(ScoreCAM(layer=MID), model, x, classes)  # (2, 2, 6, 6)
    mine_up = normalize(F.interpolate(mine, size=(12, 12), mode="bilinear", align_corners=False))
    theirs = pgc_maps(pgc.ScoreCAM, model, MID, x, classes)
    assert (mine_up - theirs).abs().max() > 1e-3

    def half_pixel_upsampling(size):
        return lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", half_pixel_upsampling)
    theirs = pgc_maps(pgc.ScoreCAM, model, MID, x, classes)
    torch.testing.assert_close(mine_up, theirs, atol=1e-4, rtol=0)
