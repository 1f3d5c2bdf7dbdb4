"""The gradient and score CAM family: identities, batching, safety around the user's model, bad input.

Tiny seeded models (and torchvision/timm architectures at random init on small inputs); nothing is downloaded.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import camloc
from camloc.engine import normalize
from camloc.errors import HeadError, InputError, LayerError
from camloc.methods import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM, default_layer_name, get_method
from camloc.methods.base import input_layout

GRADIENT = [GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM]
ALL = [*GRADIENT, ScoreCAM]


pytestmark = pytest.mark.usefixtures("one_thread")


class GapNet(nn.Module):
    """conv-ReLU x2 (the second in place), GAP, one linear layer: CAM-exact at `features`."""

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class MlpHeadNet(nn.Module):
    """Not CAM-exact (two linear layers after the pooling); DenseNet-style functional in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.features(x), inplace=True)
        return self.head(f.mean(dim=(2, 3)))


def gapnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return GapNet().eval(), torch.randn(3, 3, 16, 16)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


# ------------------------------------------------------------------------------------------------ identities


@pytest.mark.parametrize("closed_form", [True, False])
def test_gradcam_is_relu_cam_over_hw(closed_form):
    """GradCAM_c = ReLU(CAM_c) / (h w) at the last conv layer of a GAP + linear net; CAM_c / (h w) without ReLU."""
    model, x = gapnet()
    _logits, classes, cam = CAM().run(model, x, top_k=4)
    hw = cam.shape[-1] * cam.shape[-2]
    assert float(cam.amin()) < 0  # signed CAMs: the ReLU matters
    _, c2, grad = GradCAM(closed_form=closed_form).run(model, x, classes)
    torch.testing.assert_close(grad, cam.clamp(min=0) / hw, atol=1e-6, rtol=1e-5)
    signed = GradCAM(relu=False, closed_form=closed_form).run(model, x, classes)[2]
    torch.testing.assert_close(signed, cam / hw, atol=1e-6, rtol=1e-5)
    assert torch.equal(c2, classes)


@settings(max_examples=8, deadline=None)
@given(
    channels=st.integers(1, 12),
    classes=st.integers(2, 9),
    side=st.integers(4, 13),
    k=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_gradcam_identity_property(channels, classes, side, k, seed):
    """The identity by autograd on random GAP + linear nets of random sizes (odd sides, one channel, k=1...)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, classes),
    ).eval()
    x = torch.randn(2, 3, side, side)
    _, chosen, cam = CAM().run(model, x, top_k=k)
    grad = GradCAM(closed_form=False).run(model, x, chosen)[2]
    assert default_layer_name(model) == "1"
    torch.testing.assert_close(grad, cam.clamp(min=0) / side**2, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", GRADIENT)
def test_closed_form_equals_autograd(method):
    model, x = gapnet()
    a = method().run(model, x, top_k=3)
    b = method(closed_form=False).run(model, x, top_k=3)
    torch.testing.assert_close(a[2], b[2], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(a[0], b[0])


def test_densenet_inplace_relu_identity():
    """torchvision's DenseNet applies F.relu(..., inplace=True) after `features`: forward hook + autograd.grad on
    the stored output still gives Grad-CAM = ReLU(CAM)/(h w) (post-ReLU features, as the adapter sees them)."""
    torch.manual_seed(0)
    model = torchvision.models.DenseNet(
        growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=5
    ).eval()  # DenseNet-121's code, smaller
    x = torch.randn(2, 3, 64, 64)
    assert default_layer_name(model) == "features"
    _, classes, cam = CAM().run(model, x, top_k=2)
    hw = cam.shape[-1] * cam.shape[-2]
    for closed_form in (True, False):
        grad = GradCAM(closed_form=closed_form).run(model, x, classes)[2]
        torch.testing.assert_close(grad, cam.clamp(min=0) / hw, atol=1e-6, rtol=1e-4)
    assert no_hooks(model)


def test_default_model_identity_and_layer():
    """The bundled EfficientNet-Lite0: default layer `bn2` (= forward_features), where Grad-CAM by autograd equals
    ReLU(CAM)/(h w); the closed form agrees."""
    model = camloc.load("default")
    assert default_layer_name(model) == "bn2"
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    _, classes, cam = CAM().run(model, x, top_k=3)
    hw = cam.shape[-1] * cam.shape[-2]
    for closed_form in (True, False):
        grad = GradCAM(closed_form=closed_form).run(model, x, classes)[2]
        torch.testing.assert_close(grad, cam.clamp(min=0) / hw, atol=1e-5 * float(cam.abs().max()), rtol=1e-4)
    assert no_hooks(model) and not model.training


# ------------------------------------------------------------------------------------------------ batching


@pytest.mark.parametrize("method", ALL)
def test_batched_classes_equal_single_passes(method):
    """One run for k classes of B images equals B*k single-image, single-class runs."""
    model, x = gapnet()
    classes = torch.tensor([[0, 5, 2], [6, 1, 1], [3, 3, 4]])
    _, _, batched = method(layer="features.1").run(model, x, classes)
    for b in range(3):
        for j in range(3):
            single = method(layer="features.1").run(model, x[b : b + 1], classes[b : b + 1, j : j + 1])[2]
            torch.testing.assert_close(batched[b, j], single[0, 0], atol=1e-6, rtol=1e-4)


def test_scorecam_constant_channels_share_one_zero_pass():
    """Dead (constant) channels have all-zero masks: their scores come from one pass of the zero image, and the
    maps equal the formula computed channel by channel with one masked pass each."""
    model, x = gapnet()
    with torch.no_grad():  # kill 6 of the 16 channels of features.2: constant 0 after the ReLU
        model.features[2].weight[:6] = 0
        model.features[2].bias[:6] = -1.0
    classes = torch.tensor([[0, 5], [6, 1], [3, 4]])
    ScoreCAM(layer="features.3").run(model, x[:1], classes[:1])  # layer discovery (probe passes) done and cached
    batch_sizes: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: batch_sizes.append(i[0].shape[0]))
    try:
        _, _, maps = ScoreCAM(layer="features.3", batch_size=8).run(model, x, classes)
    finally:
        handle.remove()
    with torch.no_grad():
        acts = model.features(x)  # (3, 16, 8, 8)
    flat = acts.flatten(2)
    assert int((flat.amax(-1) == flat.amin(-1)).sum()) == 19  # the 6 killed ones in 3 images, and one more
    # 1 recording pass (3 images), 1 zero-image pass, then the 48 - 19 = 29 live channels in chunks of 8
    assert batch_sizes == [3, 1, 8, 8, 8, 5]
    with torch.no_grad():
        expected = torch.zeros_like(maps)
        for b in range(3):
            scores = torch.stack(
                [
                    model(
                        x[b : b + 1]
                        * normalize(
                            F.interpolate(
                                acts[b : b + 1, k : k + 1], size=(16, 16), mode="bilinear", align_corners=False
                            )
                        )
                    )[0]
                    for k in range(16)
                ]
            )  # (C, K)
            for j in range(2):
                w = scores[:, classes[b, j]].softmax(dim=0)
                expected[b, j] = torch.einsum("chw,c->hw", acts[b], w).clamp(min=0)
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", [CAM, *ALL])
def test_channels_last_input_same_maps(method):
    """On a CPU the model runs on a channels-last copy of the input: same maps as the caller's layout, the
    caller's tensor untouched."""
    model, x = gapnet()
    assert input_layout(x).is_contiguous(memory_format=torch.channels_last) and x.is_contiguous()
    single = x[0]  # not a 4-D batch: left as is
    assert input_layout(x, channels_last=False) is x and input_layout(single) is single
    fast = method()
    plain = method()
    plain.channels_last = False
    classes = torch.tensor([[0, 5], [6, 1], [3, 4]])
    torch.testing.assert_close(fast.run(model, x, classes)[2], plain.run(model, x, classes)[2], atol=1e-6, rtol=1e-5)
    assert x.is_contiguous()


def test_per_column_fallback_gives_the_same_gradients(monkeypatch):
    """If the batched backward pass fails (an op without a vmap rule), one pass per class column is used."""
    model, x = gapnet()
    expected = GradCAMPlusPlus(layer="features.1").run(model, x, top_k=3)[2]
    grad = torch.autograd.grad

    def no_batched(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batched)
    torch.testing.assert_close(GradCAMPlusPlus(layer="features.1").run(model, x, top_k=3)[2], expected)


@pytest.mark.parametrize("method", [GradCAM, ScoreCAM, CAM])
def test_target_count_must_match_batch(method):
    model, x = gapnet()
    with pytest.raises(InputError, match="3 images"):
        method().run(model, x, torch.tensor([[1], [2]]))
    with pytest.raises(InputError, match="one list of classes per image"):
        camloc.explain(model, x, targets=[[1]], method=method.name, map_sizes=())


@pytest.mark.parametrize("method", [GradCAM, ScoreCAM, CAM])
def test_target_out_of_range(method):
    model, x = gapnet()
    with pytest.raises(InputError, match="target class 7 is out of range for a model with 7 classes"):
        method().run(model, x, torch.tensor([[1], [7], [0]]))
    assert no_hooks(model)


# ------------------------------------------------------------------------------------------------ the user's model


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("method", GRADIENT)
def test_works_under_no_grad_and_inference_mode(method, context):
    model, x = gapnet()
    expected = method(layer="features.1").run(model, x, top_k=2)[2]
    with getattr(torch, context)():
        got = method(layer="features.1").run(model, x, top_k=2)[2]
        res = camloc.explain(model, x, method=method.name, layer="features.1", map_sizes=(), top_k=2)
    torch.testing.assert_close(got, expected)
    assert torch.isfinite(res.maps).all()


@pytest.mark.parametrize("method", [*ALL, CAM])
def test_model_flags_restored(method):
    model, x = gapnet()
    model.train()
    model.features[0].eval()
    model.features[0].weight.requires_grad_(False)
    before = [(m.training) for m in model.modules()], [p.requires_grad for p in model.parameters()]
    method().run(model, x, top_k=2)
    after = [(m.training) for m in model.modules()], [p.requires_grad for p in model.parameters()]
    assert before == after
    assert all(p.grad is None for p in model.parameters())  # autograd.grad: nothing accumulated in .grad
    assert no_hooks(model)


def test_train_mode_model_is_explained_in_eval_mode():
    """BatchNorm in train mode would mix the images of a batch; methods run in eval mode and restore train."""
    torch.manual_seed(0)
    model = MlpHeadNet()
    x = torch.randn(2, 3, 8, 8)
    a = GradCAM().run(model.eval(), x, top_k=2)[2]
    b = GradCAM().run(model.train(), x, top_k=2)[2]
    torch.testing.assert_close(a, b)
    assert model.training and model.features[1].training


def test_no_leak_over_200_calls():
    model, x = gapnet()
    method, x = GradCAM(layer="features.1"), x[:1, :, :8, :8]
    for _ in range(5):
        method.run(model, x, top_k=2)
    gc.collect()
    before = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))
    for _ in range(200):
        method.run(model, x, top_k=2)
    gc.collect()
    after = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))
    assert after - before <= 2
    assert no_hooks(model)


def test_hooks_removed_when_the_model_fails():
    class Failing(GapNet):
        def forward(self, x):
            self.features(x)
            raise RuntimeError("boom")

    torch.manual_seed(0)
    model = Failing().eval()
    with pytest.raises(RuntimeError, match="boom"):
        GradCAM(layer="features.1").run(model, torch.randn(1, 3, 8, 8))
    assert no_hooks(model)


@pytest.mark.parametrize("method", ALL)
def test_all_negative_map_is_defined(method):
    """A class whose evidence is negative everywhere: zero map after the ReLU, never NaN, through explain too."""
    model, x = gapnet()
    with torch.no_grad():
        model.fc.weight[0] = -model.fc.weight[0].abs()  # features are post-ReLU (>= 0): CAM_0 <= 0 everywhere
    _, _, raw = method().run(model, x, torch.zeros(3, 1, dtype=torch.long))
    res = camloc.explain(model, x, targets=[[0]] * 3, method=method.name, map_sizes=())
    assert torch.isfinite(raw).all() and torch.isfinite(res.maps).all()
    if method is not ScoreCAM:  # Score-CAM's weights are a softmax (> 0): its maps follow A >= 0, not the sign of w
        assert float(raw.abs().max()) == 0.0 and float(res.maps.abs().max()) == 0.0
    if method is GradCAM:
        signed = GradCAM(relu=False).run(model, x, torch.zeros(3, 1, dtype=torch.long))[2]
        assert float(signed.max()) < 0 and torch.isfinite(signed).all()
        assert torch.isfinite(normalize(signed)).all()


@pytest.mark.parametrize(
    ("method", "layer"), [(m, layer) for m in GRADIENT for layer in (None, "features.1")] + [(CAM, None)]
)
def test_differentiable_maps(method, layer):
    """differentiable=True: maps on the model's device, equal to the plain ones, usable in a loss."""
    model, x = gapnet()
    classes = torch.tensor([[1, 2], [0, 3], [4, 4]])
    plain = method(layer=layer).run(model, x, classes)[2]
    assert not plain.requires_grad
    with torch.no_grad():  # the option wins over a caller's no_grad
        _, _, maps = method(layer=layer, differentiable=True).run(model, x, classes)
    assert maps.requires_grad and maps.device == next(model.parameters()).device
    torch.testing.assert_close(maps.detach(), plain)
    loss = maps.square().mean()
    loss.backward()
    grad = model.features[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and float(grad.abs().max()) > 0


# ------------------------------------------------------------------------------------------------ layers


def test_default_layers():
    torch.manual_seed(0)
    import timm

    assert default_layer_name(torchvision.models.resnet18(num_classes=3)) == "layer4"
    assert default_layer_name(timm.create_model("mobilenetv3_small_050", num_classes=3)) == "blocks"
    assert default_layer_name(GapNet()) == "features"
    assert default_layer_name(MlpHeadNet()) == "features"


def test_layer_by_name_changes_the_map():
    model, x = gapnet()
    a = GradCAM(layer="features.1").run(model, x, top_k=1)[2]
    b = GradCAM().run(model, x, top_k=1)[2]
    assert a.shape[-1] == 16 and b.shape[-1] == 8


@pytest.mark.parametrize("method", ALL)
def test_any_cnn_through_explain(method):
    """A net with an MLP head: CAM refuses it, every other method explains it through `camloc.explain`."""
    torch.manual_seed(0)
    model = MlpHeadNet().eval()
    x = torch.randn(2, 3, 12, 12)
    res = camloc.explain(model, x, top_k=3, method=method.name, map_sizes=())
    assert res.maps.shape == (2, 3, 12, 12) and torch.isfinite(res.maps).all()
    assert res.settings["method"] == method.name
    with pytest.raises(HeadError, match="--method gradcam"):
        camloc.explain(model, x, method="cam", map_sizes=())


def test_names_and_classes_resolve():
    for name, cls in [
        ("gradcam", GradCAM),
        ("Grad-CAM", GradCAM),
        ("gradcam++", GradCAMPlusPlus),
        ("xgradcam", XGradCAM),
        ("layercam", LayerCAM),
        ("scorecam", ScoreCAM),
        ("cam", CAM),
    ]:
        assert type(get_method(name)) is cls
    assert get_method(GradCAM, layer="x").layer == "x"
    mine = GradCAM(relu=False)
    chosen = get_method(mine, layer="x")
    assert chosen.layer == "x" and getattr(chosen, "relu") is False and mine.layer is None  # noqa: B009
    with pytest.raises(InputError, match="two layers given"):
        get_method(GradCAM(layer="a"), layer="b")
    with pytest.raises(InputError, match="unknown method 'gradcan'"):
        get_method("gradcan")


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("method", ALL)
def test_unknown_layer(method):
    model, x = gapnet()
    with pytest.raises(InputError, match=r"no layer named 'features\.9'.*similar: features"):
        method(layer="features.9").run(model, x)


@pytest.mark.parametrize(
    ("layer", "message"), [("fc", r"outputs shape \(3, 7\), not a \(batch, channels, h, w\)"), ("", "outputs shape")]
)
@pytest.mark.parametrize("method", ALL)
def test_layer_without_spatial_output(method, layer, message):
    model, x = gapnet()
    with pytest.raises(LayerError, match=message):
        method(layer=layer).run(model, x)
    assert no_hooks(model)


def test_layer_with_1x1_output_and_unused_layer():
    class Net(GapNet):
        def __init__(self):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.unused = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.fc(self.pool(self.features(x)).flatten(1))

    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(LayerError, match="1x1 map"):
        GradCAM(layer="pool").run(model, x)
    with pytest.raises(LayerError, match="'unused' .* is not called"):  # noqa: RUF043
        GradCAM(layer="unused").run(model, x)


@pytest.mark.parametrize("wrap", [lambda y: (y, y), lambda y: {"logits": y}])
@pytest.mark.parametrize("method", [*ALL, CAM])
def test_model_returning_tuple_or_dict(method, wrap):
    class Wrapped(GapNet):
        def forward(self, x):
            return wrap(super().forward(x))

    torch.manual_seed(0)
    model = Wrapped().eval()
    with pytest.raises(InputError, match=r"the model returns (tuple|dict), not \(batch, classes\) logits"):
        method().run(model, torch.randn(2, 3, 8, 8))
    assert no_hooks(model)


# ------------------------------------------------------------------------------------------------ command line


def test_cli_cam_on_a_non_cam_model_is_one_line(tmp_path, capsys):
    """`camloc explain --method cam` on a net without a GAP + linear head: one line, exit 2, no traceback;
    `--method gradcam` on the same net works."""
    from camloc.cli import main

    image = str(Path(__file__).resolve().parents[2] / "examples" / "cat.jpg")
    common = [
        image,
        "--model",
        "mobilenetv3_small_050",
        "--map-sizes",
        "native",
        "--no-images",
        "--quiet",
        "--format",
        "json",
        "--out",
        str(tmp_path),
    ]
    assert main(["explain", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    message = [line for line in err if line.startswith("camloc: error:")]
    assert len(message) == 1 and "not CAM-exact" in message[0] and "--method gradcam" in message[0]
    assert not any("Traceback" in line for line in err)
    assert main(["explain", *common, "--method", "gradcam", "--top-k", "2"]) == 0
    assert (tmp_path / "cat.json").exists()
    assert main(["explain", *common, "--method", "gradcam", "--layer", "blocks.9"]) == 2
    assert "no layer named 'blocks.9'" in capsys.readouterr().err
