"""GapNet: feature resolution = input / stride, the CAM identity through camloc.engine, checkpoints by path."""

from __future__ import annotations

import pytest
import torch

from camloc.engine import check_identity, class_activation_maps
from camloc.errors import InputError
from camloc.io import save_checkpoint
from camloc.models import zoo
from camloc.models.adapters import get_adapter
from camloc.models.gapnet import BoxRegressor, GapNet, gapnet_boxreg

torch.set_num_threads(1)
WIDTHS = (8, 16, 16, 24, 24)


@pytest.mark.parametrize("stride", [2, 4, 8, 16, 32])
def test_feature_resolution_is_canvas_over_stride(stride):
    net = GapNet(10, stride, WIDTHS).eval()
    with torch.no_grad():
        feats = net.forward_features(torch.randn(2, 3, 96, 64))
    assert feats.shape == (2, 24, 96 // stride, 64 // stride)


@pytest.mark.parametrize(("stride", "norm"), [(4, "batch"), (8, "group"), (16, "none")])
def test_cam_identity_and_adapter(stride, norm):
    torch.manual_seed(0)
    net = GapNet(7, stride, WIDTHS, norm=norm).eval()
    with torch.no_grad():  # make BN statistics non-trivial
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    adapter = get_adapter(net)
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        feats, logits = adapter.forward(x)
        classes = torch.arange(7).expand(3, 7)
        raw = class_activation_maps(feats, adapter.weight, classes)
    assert raw.shape == (3, 7, 96 // stride, 96 // stride)
    assert torch.allclose(logits, net(x))
    assert float(check_identity(raw, logits, classes, adapter.bias)) < 1e-4


def test_checkpoint_roundtrip_via_zoo(tmp_path):
    torch.manual_seed(1)
    net = GapNet(4, 8, WIDTHS).eval()
    config = {
        "architecture": "gapnet",
        "arch_kwargs": {"num_classes": 4, "final_stride": 8, "widths": list(WIDTHS)},
        "labels": ["a", "b", "c", "d"],
        "preprocess": {"mean": [0.1] * 3, "std": [0.25] * 3, "input_size": 96, "interpolation": "bilinear"},
    }
    save_checkpoint(tmp_path / "ck", net.state_dict(), config)
    loaded = zoo.load(tmp_path / "ck")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x))
    assert loaded.camloc_info.labels == ["a", "b", "c", "d"] and loaded.camloc_info.preprocess.input_size == 96
    config["arch_kwargs"]["widths"] = [8, 16, 32, 24, 24]  # config that does not match the weights
    save_checkpoint(tmp_path / "bad", net.state_dict(), config)
    with pytest.raises(InputError, match="do not match"):
        zoo.load(tmp_path / "bad")


def test_box_regressor_shares_backbone():
    reg = gapnet_boxreg(5, 8, WIDTHS).eval()
    assert isinstance(reg, BoxRegressor)
    logits, boxes = reg(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5) and boxes.shape == (2, 4) and ((boxes > 0) & (boxes < 1)).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"final_stride": 3}, "power of two"), ({"final_stride": 64}, "power"), ({"norm": "layer"}, "norm")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        GapNet(10, widths=WIDTHS, **kwargs)
