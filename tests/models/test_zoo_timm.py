"""`timm:NAME.TAG` model specs (never downloading in tests: timm's loader is replaced) and checkpoint folders of
transformer classifiers (safetensors + config.json) that keep their CAM-exact head."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import camloc
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.io import save_checkpoint
from camloc.methods import CAM
from camloc.models.adapters import get_adapter
from camloc.models.tokens import fixed_input_size

pytestmark = pytest.mark.usefixtures("one_thread")


def test_unknown_timm_name_or_tag_is_one_line():
    with pytest.raises(InputError, match="timm has no architecture 'no_such_net'"):
        camloc.load("timm:no_such_net.x")
    with pytest.raises(InputError, match=r"no pretrained tag 'nope' for convnext_tiny \(known: .*fb_in1k"):
        camloc.load("timm:convnext_tiny.nope")


def test_timm_weights_that_cannot_be_had_say_what_to_do(monkeypatch):
    calls = []

    def offline(name, pretrained=False, **kwargs):
        calls.append((name, pretrained))
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(InputError) as err:
        camloc.load("timm:convnext_tiny.fb_in1k")
    message = str(err.value)
    assert calls == [("convnext_tiny.fb_in1k", True)]
    assert "\n" not in message and "couldn't connect" in message and "checkpoint folder" in message


def test_timm_pretrained_model_gets_its_config(monkeypatch):
    """What the loader does with the model timm returns (here built offline): labels, preprocessing, name."""
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: real(name, pretrained=False, **kw))
    model = camloc.load("timm:convnext_atto.d2_in1k")
    info = model.camloc_info
    assert info.name == "convnext_atto.d2_in1k" and info.pretrained and len(info.labels) == 1000
    assert info.preprocess.input_size == 224 and not model.training


def test_vit_checkpoint_folder_keeps_an_exact_head(tmp_path):
    torch.manual_seed(0)
    kwargs = {"global_pool": "avg", "img_size": 64, "num_classes": 5, "depth": 2}
    model = timm.create_model("vit_small_patch16_224", pretrained=False, **kwargs).eval()
    with torch.no_grad():
        model.head.weight.mul_(30)
    save_checkpoint(
        tmp_path / "vit",
        model.state_dict(),
        {"architecture": "vit_small_patch16_224", "arch_kwargs": kwargs, "labels": list("abcde")},
    )
    loaded = camloc.load(tmp_path / "vit")
    assert fixed_input_size(loaded) == (64, 64)
    x = torch.randn(2, 3, 64, 64)
    logits, classes, raw = CAM().run(loaded, x, top_k=2)
    torch.testing.assert_close(logits, model(x))
    assert float(check_identity(raw, logits, classes, get_adapter(loaded).cam_bias)) <= 2e-5 * float(logits.abs().max())


def test_cli_explains_a_vit_checkpoint_with_gradcam(tmp_path, picture):
    """A class-token ViT checkpoint through the CLI: CAM refused in one line (exit 2), Grad-CAM names its layer."""
    from camloc.cli import main

    torch.manual_seed(0)
    kwargs = {"img_size": 64, "num_classes": 3, "depth": 2}
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, **kwargs)
    save_checkpoint(
        tmp_path / "deit", model.state_dict(), {"architecture": "deit_tiny_patch16_224", "arch_kwargs": kwargs}
    )
    common = [picture, "--model", str(tmp_path / "deit"), "--no-images", "--format", "json", "--quiet"]
    assert main(["explain", *common, "--out", str(tmp_path / "cam")]) == 2
    assert main(["explain", *common, "--method", "gradcam", "--out", str(tmp_path / "out")]) == 0
    record = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert record["settings"]["layer"] == "blocks.1.norm1" and record["settings"]["fixed_input_size"] == [64, 64]
    assert len(record["predictions"]) == 3
