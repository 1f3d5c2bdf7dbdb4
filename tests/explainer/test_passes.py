"""`camloc.explain`: shapes, the identity on `raw`, sizes of maps and boxes, targets, and a model left as found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.models.adapters import get_adapter


def test_tensor_input_shapes_and_identity(default_model: torch.nn.Module) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 256)
    res = camloc.explain(default_model, x, top_k=5)
    assert res.classes.shape == res.scores.shape == res.logits.shape == (2, 5)
    assert res.raw.shape == (2, 5, 7, 8) and res.maps.shape == (2, 5, 224, 256) and res.boxes.shape == (2, 5, 4)
    assert torch.all(res.scores[:, :-1] >= res.scores[:, 1:])  # best first
    with torch.no_grad():
        reference = default_model(x)
    assert torch.allclose(res.all_logits, reference, atol=1e-5)
    assert torch.allclose(res.scores, reference.softmax(1).gather(1, res.classes), atol=1e-6)
    bias = get_adapter(default_model).bias
    assert float(check_identity(res.raw, res.all_logits, res.classes, bias)) < 1e-4
    assert float(res.maps.min()) >= 0.0 and float(res.maps.max()) <= 1.0
    assert torch.allclose(res.maps.flatten(2).amax(-1), torch.ones(2, 5))


def test_identity_holds_whatever_the_map_settings(default_model: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 224, 224)
    a = camloc.explain(default_model, x, top_k=3, map_sizes=())
    b = camloc.explain(default_model, x, top_k=3, map_sizes=(320, 448), relu=True)
    assert torch.equal(a.raw, b.raw) and torch.equal(a.classes, b.classes)
    assert not torch.equal(a.maps, b.maps)
    assert b.settings["map_sizes"] == [320, 448] and b.settings["relu"] is True


def test_files_of_different_sizes(default_model: torch.nn.Module, picture: str, tmp_path: Path) -> None:
    tall = tmp_path / "tall.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (150, 60, 3), dtype=np.uint8)).save(tall)
    res = camloc.explain(default_model, [picture, str(tall)], top_k=2, map_sizes=())
    assert res.sizes == [(90, 120), (150, 60)]
    assert isinstance(res.maps, list) and res.maps[0].shape == (2, 90, 120) and res.maps[1].shape == (2, 150, 60)
    assert res.raw[0].shape == (2, 7, 10)  # shorter side 224 -> 224x299 -> ceil(/32) with "same" padding
    for (h, w), boxes in zip(res.sizes, res.boxes, strict=False):
        assert torch.all(boxes[:, 2] <= w) and torch.all(boxes[:, 3] <= h)
        assert torch.all(boxes[:, 0] < boxes[:, 2]) and torch.all(boxes[:, 1] < boxes[:, 3])


def test_same_shape_at_224_different_at_the_map_size(default_model: torch.nn.Module) -> None:
    """600x400 and 640x427 share the 224 pass (336x224) but not the 640 one (960x640 vs 959x640): batched,
    each gets the maps it gets alone (the 640 pass used to stack the two shapes and raise)."""
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((400, 600), (427, 640))]
    both = camloc.explain(default_model, images, top_k=2, map_sizes=(640,))
    for i, img in enumerate(images):
        alone = camloc.explain(default_model, img, top_k=2, map_sizes=(640,))
        assert torch.equal(both.classes[i], alone.classes[0])
        assert torch.allclose(both.maps[i], alone.maps[0], atol=1e-5)


def test_pil_and_path_give_the_same_result(default_model: torch.nn.Module, picture: str) -> None:
    a = camloc.explain(default_model, picture, top_k=2)
    b = camloc.explain(default_model, [Image.open(picture)], top_k=2)
    assert torch.equal(a.classes, b.classes) and torch.allclose(a.maps, b.maps)


def test_targets(default_model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 224, 224)
    res = camloc.explain(default_model, x, targets=[[281, 285], [1, 2]], map_sizes=())
    assert res.classes.tolist() == [[281, 285], [1, 2]]
    assert torch.allclose(res.logits, res.all_logits.gather(1, res.classes))
    with pytest.raises(InputError, match="1 target lists for 2 images"):
        camloc.explain(default_model, x, targets=[[281]])
    with pytest.raises(InputError, match="out of range"):
        camloc.explain(default_model, x, targets=torch.tensor([[5], [1000]]))


def test_model_left_as_found(default_model: torch.nn.Module) -> None:
    default_model.train()
    default_model.blocks[0].eval()
    flags = [p.requires_grad for p in default_model.parameters()]
    try:
        camloc.explain(default_model, torch.randn(1, 3, 224, 224), top_k=1)
        assert default_model.training and not default_model.blocks[0].training
        assert default_model.blocks[1].training
        assert [p.requires_grad for p in default_model.parameters()] == flags
        assert not any(m._forward_hooks for m in default_model.modules())
    finally:
        default_model.eval()


def test_bad_tensor_shape(default_model: torch.nn.Module) -> None:
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        camloc.explain(default_model, torch.randn(2, 1, 32, 32))
