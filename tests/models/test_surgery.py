"""GAP surgery: the paper's cut points, CAM-exactness, shared weights, checkpoints and user-given initial weights."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from camloc.engine import check_identity, class_activation_maps
from camloc.errors import HeadError, InputError
from camloc.io import save_checkpoint
from camloc.models import zoo
from camloc.models.adapters import get_adapter
from camloc.models.pretrained import load_matching
from camloc.models.surgery import gap_surgery, gap_surgery_arch

torch.set_num_threads(1)


def test_plain_alexnet_is_refused_and_surgery_passes():
    alex = torchvision.models.alexnet(weights=None, num_classes=6).eval()
    with pytest.raises(HeadError):
        get_adapter(alex)
    net = gap_surgery(alex, num_classes=6).eval()
    adapter = get_adapter(net)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats, logits = adapter.forward(x)
        classes = logits.topk(3).indices
        raw = class_activation_maps(feats, adapter.weight, classes)
        kept = alex.features[:-1](x)  # the trunk is the original conv part, weights shared
    assert feats.shape == (2, 1024, 13, 13)
    assert net.features[0].weight is alex.features[0].weight
    assert torch.allclose(net.features(x), kept)
    assert float(check_identity(raw, logits, classes, adapter.bias)) < 1e-4


@pytest.mark.parametrize(("base", "side"), [("vgg11", 14), ("googlenet", 14)])
def test_paper_resolution(base, side):
    net = gap_surgery_arch(base, num_classes=3).eval()
    get_adapter(net)
    with torch.no_grad():
        assert net.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 1024, side, side)


def test_checkpoint_and_initial_weights(tmp_path):
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None)
    save_file({k: v.contiguous() for k, v in alex.state_dict().items()}, str(tmp_path / "alex.safetensors"))
    net = gap_surgery_arch("alexnet", num_classes=4)
    report = load_matching(net, tmp_path / "alex.safetensors")
    assert torch.equal(net.features[3].weight, alex.features[3].weight)
    assert "classifier.1.weight" in report.skipped and "fc.weight" in report.missing
    save_checkpoint(
        tmp_path / "ck",
        net.state_dict(),
        {"architecture": "gap_surgery", "arch_kwargs": {"base": "alexnet", "num_classes": 4}},
    )
    loaded = zoo.load(tmp_path / "ck")
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net.eval()(x))
    save_file({"w": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="another architecture"):
        load_matching(net, tmp_path / "other.safetensors")


def test_unknown_base():
    with pytest.raises(InputError, match="surgery"):
        gap_surgery(torchvision.models.resnet18(weights=None), 3)
    with pytest.raises(InputError, match="base"):
        gap_surgery_arch("resnet18")


def test_builder_names(tmp_path):
    from camloc.models.builder import model_for_training

    net, config, _ = model_for_training("resnet18", 10)  # torchvision, already GAP + linear
    assert config == {"architecture": "resnet18", "arch_kwargs": {"num_classes": 10}}
    get_adapter(net)
    net, config, _ = model_for_training("resnet10t", 10)  # timm, GAP + linear
    assert config["architecture"] == "resnet10t" and get_adapter(net).use_timm
    net, config, _ = model_for_training("surgery:alexnet", 10)
    assert config["architecture"] == "gap_surgery" and config["arch_kwargs"]["base"] == "alexnet"
    net, config, _ = model_for_training("gapnet", 10, final_stride=4, widths=(8, 16, 16))
    save_checkpoint(tmp_path / "g", net.state_dict(), config)
    with pytest.raises(InputError, match="another architecture"):  # gapnet weights as init of a surgery net
        model_for_training("surgery:alexnet", 10, init=tmp_path / "g")
    with pytest.raises(HeadError, match="not CAM-exact"):
        model_for_training("alexnet", 10)
