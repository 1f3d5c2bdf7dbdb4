"""`camloc.explain` on transformer classifiers: fixed-size models get the whole picture resized to their size (no
map passes at other sizes), dynamic-size ones keep the aspect ratio; the layer used is in `settings`."""

from __future__ import annotations

import pytest
import timm
import torch

import camloc
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.models.adapters import get_adapter

pytestmark = pytest.mark.usefixtures("one_thread")


def _vit(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, global_pool="avg", depth=2, **kwargs).eval()
    with torch.no_grad():
        model.head.weight.mul_(30)
    return model


def test_fixed_size_vit_explains_a_whole_rectangular_picture(picture):
    model = _vit(img_size=64)
    res = camloc.explain(model, picture, top_k=2)  # 120x90 picture, model takes 64x64 only
    assert res.settings["fixed_input_size"] == [64, 64] and res.settings["map_sizes"] == []
    assert res.settings["layer"] == "forward_features" and res.settings["native_size"] == 64
    assert tuple(res.raw.shape) == (1, 2, 4, 4) and res.sizes == [(90, 120)]
    assert float(check_identity(res.raw, res.all_logits, res.classes, get_adapter(model).cam_bias)) < 1e-4
    with pytest.raises(InputError, match="takes 64x64 inputs only"):
        camloc.explain(model, picture, map_sizes=(128,))
    with pytest.raises(InputError, match="got a 64x96 tensor"):
        camloc.explain(model, torch.randn(1, 3, 64, 96))


def test_dynamic_size_vit_keeps_the_aspect_and_map_passes(picture):
    model = _vit(img_size=64, dynamic_img_size=True)
    info = camloc.models.zoo.ModelInfo("vit", preprocess=camloc.preprocess.Preprocess(input_size=64))
    model.camloc_info = info  # type: ignore[assignment]  # a plain attribute, as camloc.load sets it
    res = camloc.explain(model, picture, top_k=1, map_sizes=(64, 128))
    assert "fixed_input_size" not in res.settings
    assert tuple(res.raw.shape) == (1, 1, 4, 5)  # 64x85 -> 64x80 input (patch multiples): 4x5 patches
    assert float(check_identity(res.raw, res.all_logits, res.classes, get_adapter(model).cam_bias)) < 1e-4


def test_gradcam_settings_name_the_layer_on_a_class_token_vit(picture):
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=64, depth=3).eval()
    res = camloc.explain(model, picture, top_k=1, method="gradcam")
    assert res.settings["layer"] == "blocks.2.norm1" and tuple(res.raw.shape) == (1, 1, 4, 4)
    with pytest.raises(InputError, match="classifies its class token"):
        camloc.explain(model, picture, method="cam")
