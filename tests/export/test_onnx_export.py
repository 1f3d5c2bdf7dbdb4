"""`camloc export`: onnxruntime reproduces PyTorch's logits, classes, scores and CAMs (random and default weights,
batch 1 and 3, square and non-square inputs); in-graph upsampling; explicit classes; fixed sizes; bad models."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camloc.errors import HeadError, InputError
from camloc.export import export_onnx
from camloc.models.adapters import get_adapter

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4  # the bound on |onnxruntime - PyTorch| for raw maps
SHAPES = [(1, 64, 64), (3, 64, 64), (1, 64, 96), (3, 80, 56)]


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def reference(model: nn.Module, x: torch.Tensor, k: int, classes: torch.Tensor | None = None):
    """PyTorch: logits, the top-k (or given) classes, their softmax scores and raw CAMs, via camloc's adapter."""
    adapter = get_adapter(model)
    with torch.no_grad():
        feats, logits = adapter.forward(x)
        chosen = logits.topk(k, dim=1).indices if classes is None else classes
        cams = adapter.maps(feats, chosen)  # camloc's CAM (a pooled-vector norm scales each image's maps)
    return logits.numpy(), chosen.numpy(), logits.softmax(1).gather(1, chosen).numpy(), cams.numpy()


def inputs(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("b", "h", "w"), SHAPES)
def test_random_weights_match_pytorch(small_model, small_graph, b, h, w) -> None:
    x = inputs(b, h, w)
    logits, classes, scores, cams = session(small_graph).run(None, {"image": x.numpy()})
    ref = reference(small_model, x, 3)
    assert cams.shape == (b, 3, h // 8, w // 8)  # dynamic batch, height and width
    np.testing.assert_array_equal(classes, ref[1])
    for got, want in ((logits, ref[0]), (scores, ref[2]), (cams, ref[3])):
        assert np.abs(got - want).max() <= TOL


def test_cam_identity_holds_on_the_graph_outputs(small_model, small_graph) -> None:
    """mean_xy CAM_c + b_c == logit_c (Zhou et al.), on onnxruntime's outputs alone."""
    logits, classes, _, cams = session(small_graph).run(None, {"image": inputs(3, 72, 48, seed=5).numpy()})
    bias = small_model.fc.bias.detach().numpy()
    lhs = cams.mean(axis=(2, 3)) + bias[classes]
    np.testing.assert_allclose(lhs, np.take_along_axis(logits, classes, 1), atol=1e-4)


def test_explicit_classes_input(small_model, small_graph) -> None:
    """The optional `classes` input maps the given classes; -1 entries and the default mean the top-k."""
    x = inputs(2, 64, 80, seed=3)
    given = np.array([[7, 0, 9], [2, 2, 5]], dtype=np.int64)
    _, classes, _, cams = session(small_graph).run(None, {"image": x.numpy(), "classes": given})
    ref = reference(small_model, x, 3, torch.from_numpy(given))
    np.testing.assert_array_equal(classes, given)
    assert np.abs(cams - ref[3]).max() <= TOL
    mixed = np.array([[-1, 4, -1]], dtype=np.int64)  # (1, k) broadcast over the batch
    _, classes, _, _ = session(small_graph).run(None, {"image": x.numpy(), "classes": mixed})
    top = reference(small_model, x, 3)[1]
    np.testing.assert_array_equal(classes[:, 1], [4, 4])
    np.testing.assert_array_equal(classes[:, [0, 2]], top[:, [0, 2]])


def test_default_weights_match_pytorch(default_model, default_graph) -> None:
    path, report = default_graph
    assert report.same_classes and report.max_diff["cams"] <= TOL
    sess = session(path)
    for b, h, w in [(1, 224, 224), (3, 224, 288), (1, 320, 240)]:
        x = inputs(b, h, w, seed=b)
        got = sess.run(None, {"image": x.numpy()})
        ref = reference(default_model, x, 5)
        np.testing.assert_array_equal(got[1], ref[1])
        for g, r in zip(got[::2], ref[::2], strict=True):  # logits, cams
            assert np.abs(g - r).max() <= TOL
        assert np.abs(got[2] - ref[2]).max() <= 1e-6  # scores are probabilities


def test_in_graph_upsampling_is_pytorch_bilinear(small_model, tmp_path) -> None:
    """Resize with half-pixel centres (opset 17) = F.interpolate(align_corners=False), to the input or a fixed size."""
    x = inputs(3, 64, 88, seed=7)
    ref = reference(small_model, x, 2)[3]
    up = export_onnx(small_model, tmp_path / "up.onnx", top_k=2, upsample=True).path
    cams = session(up).run(None, {"image": x.numpy()})[3]
    want = F.interpolate(torch.from_numpy(ref), size=(64, 88), mode="bilinear", align_corners=False).numpy()
    assert cams.shape == (3, 2, 64, 88) and np.abs(cams - want).max() <= TOL
    fixed = export_onnx(small_model, tmp_path / "fixed.onnx", top_k=2, map_size=(20, 30)).path
    cams = session(fixed).run(None, {"image": x.numpy()})[3]
    want = F.interpolate(torch.from_numpy(ref), size=(20, 30), mode="bilinear", align_corners=False).numpy()
    assert cams.shape == (3, 2, 20, 30) and np.abs(cams - want).max() <= TOL
    # align_corners=True (the opset-9 behaviour the pitfall is about) would give a measurably different map
    wrong = F.interpolate(torch.from_numpy(ref), size=(20, 30), mode="bilinear", align_corners=True).numpy()
    assert np.abs(wrong - want).max() > 100 * TOL


def test_fixed_input_size(small_model, tmp_path) -> None:
    path = export_onnx(small_model, tmp_path / "fixed.onnx", top_k=2, input_size=(48, 64)).path
    sess = session(path)
    assert sess.get_inputs()[0].shape[1:] == [3, 48, 64]
    x = inputs(3, 48, 64, seed=2)
    got = sess.run(None, {"image": x.numpy()})
    assert np.abs(got[3] - reference(small_model, x, 2)[3]).max() <= TOL
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        sess.run(None, {"image": inputs(1, 64, 64).numpy()})


class HookNet(nn.Module):
    """A plain module (no timm API): the adapter records the feature layer; functional ReLU before the pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 12, 3, 2, 1))
        self.fc = nn.Linear(12, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.body(x)).mean(dim=(2, 3)))


def test_plain_module_through_recorded_adapter(tmp_path) -> None:
    torch.manual_seed(1)
    model = HookNet().eval()
    model.train()  # exported in eval mode (BatchNorm's running statistics), then left as found
    path = export_onnx(model, tmp_path / "hook.onnx", top_k=4).path
    assert all(m.training for m in model.modules())
    model.eval()
    export_onnx(model, tmp_path / "hook.onnx", top_k=4)
    assert not any(m.training for m in model.modules())
    x = inputs(3, 40, 52, seed=4)
    got = session(path).run(None, {"image": x.numpy()})
    ref = reference(model, x, 4)
    np.testing.assert_array_equal(got[1], ref[1])
    assert np.abs(got[3] - ref[3]).max() <= TOL
    assert not any(m._forward_hooks for m in model.modules())  # the capture hook is gone


class MlpHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_refusals(small_model, tmp_path) -> None:
    with pytest.raises(HeadError, match="not CAM-exact"):
        export_onnx(MlpHead(), tmp_path / "mlp.onnx")
    with pytest.raises(InputError, match="top-k"):
        export_onnx(small_model, tmp_path / "k.onnx", top_k=11)
    with pytest.raises(InputError, match="either"):
        export_onnx(small_model, tmp_path / "both.onnx", upsample=True, map_size=(8, 8))
    assert not list(tmp_path.iterdir())  # nothing half written


def test_cli_export(tmp_path) -> None:
    out = tmp_path / "g.onnx"
    run = subprocess.run(
        [sys.executable, "-m", "camloc", "export", "--model", "gapnet", "--out", str(out), "--top-k", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "same classes: True" in run.stdout and out.is_file()
    sess = session(out)
    assert [o.name for o in sess.get_outputs()] == ["logits", "classes_out", "scores", "cams"]
    bad = subprocess.run(
        [sys.executable, "-m", "camloc", "export", "--model", "gapnet", "--out", str(out), "--top-k", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("camloc: error: --top-k")


def test_fixed_size_models_export_at_their_size(tmp_path) -> None:
    """A timm config with fixed_input_size (position embeddings, say): the graph takes that size only."""
    torch.manual_seed(2)
    model = HookNet().eval()
    vars(model)["pretrained_cfg"] = {"fixed_input_size": True, "input_size": (3, 48, 40)}  # as timm sets it
    report = export_onnx(model, tmp_path / "v.onnx")
    assert not report.dynamic and report.max_diff["cams"] <= TOL
    assert session(report.path).get_inputs()[0].shape[2:] == [48, 40]


def test_layernorm_head_variant(tmp_path) -> None:
    """A LayerNorm of the pooled vector (timm ConvNeXt's head.norm) keeps CAM exact per image; the graph uses the
    adapter's own `maps`, so its CAMs are the adapter's and mean(CAM_c) + cam_bias_c == logit_c holds on them."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=10).eval()
    path = export_onnx(model, tmp_path / "convnext.onnx", top_k=3).path
    x = inputs(3, 96, 128, seed=6)
    logits, classes, _, cams = session(path).run(None, {"image": x.numpy()})
    adapter: Any = get_adapter(model)
    with torch.no_grad():
        feats, ref_logits = adapter.forward(x)
        ref = adapter.maps(feats, torch.from_numpy(classes)).numpy()
    assert np.abs(logits - ref_logits.numpy()).max() <= TOL and np.abs(cams - ref).max() <= TOL
    bias = adapter.cam_bias.detach().numpy()
    np.testing.assert_allclose(
        cams.mean(axis=(2, 3)) + bias[classes], np.take_along_axis(logits, classes, 1), atol=1e-4
    )


def test_fixed_size_vit_with_average_pooled_tokens(tmp_path) -> None:
    """A ViT built for 224x224 (patch tokens average-pooled: CAM-exact) is exported at that size; its tokens become
    the (B, C, 14, 14) map in the graph (a Transpose with non-negative dims, which ONNX requires)."""
    import timm

    torch.manual_seed(0)
    kwargs = {"num_classes": 10, "global_pool": "avg", "class_token": False, "depth": 2}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).eval()
    report = export_onnx(model, tmp_path / "vit.onnx", top_k=3)
    assert report.input_size == (224, 224) and report.same_classes
    x = inputs(2, 224, 224, seed=8)
    logits, classes, _, cams = session(report.path).run(None, {"image": x.numpy()})
    ref = reference(model, x, 3)
    np.testing.assert_array_equal(classes, ref[1])
    assert np.abs(logits - ref[0]).max() <= TOL
    assert cams.shape == (2, 3, 14, 14) and np.abs(cams - ref[3]).max() <= TOL
