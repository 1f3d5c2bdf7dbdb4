"""The coarse-to-fine zoom of `camloc.explain`: its windows, its box rule, its settings, batches, and the identity
on the classification pass (unchanged by the procedure)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import camloc
from camloc.boxes import BoxRule, box_iou, boxes_from_maps, component_boxes, mask_boxes, zoom_window
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.explainer.passes import DEFAULT_ZOOM, Zoom, zoom_plan
from camloc.methods import CAM
from camloc.models.adapters import get_adapter
from camloc.preprocess import IMAGENET_MEAN, IMAGENET_STD


class Brightness(nn.Module):
    """A GAP + linear net whose class-0 CAM is the image's brightness averaged over 16x16 cells (class 1: its
    negative): where an object is, is known exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 1, 1, bias=False), nn.AvgPool2d(16))
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.trunk[0].weight.fill_(1 / 3)
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x).mean(dim=(2, 3)))


CAM_BRIGHT = CAM(layer="trunk", linear_layer="fc")


def square_image(h: int, w: int, box: tuple[int, int, int, int]) -> Image.Image:
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[box[1] : box[3], box[0] : box[2]] = 255
    return Image.fromarray(arr)


def iou(a, b) -> float:
    return float(box_iou(torch.as_tensor(a).reshape(1, 4), torch.as_tensor(b).reshape(1, 4))[0, 0])


def test_zoom_window_by_hand() -> None:
    # longer side 40 < min side 0.25 * 360 = 90: a 90-pixel square centred on the box
    assert zoom_window((100, 100, 140, 120), 360, 480, expand=1.0) == (75, 65, 165, 155)
    # 2 x 100 = 200, shifted into the image at the top-left corner
    assert zoom_window((0, 0, 100, 50), 360, 480, expand=2.0) == (0, 0, 200, 200)
    # shifted in from the bottom-right corner
    assert zoom_window((440, 330, 480, 360), 360, 480, expand=1.0) == (390, 270, 480, 360)
    # never larger than the shorter side
    assert zoom_window((0, 0, 480, 360), 360, 480, expand=1.5) == (60, 0, 420, 360)


def test_all_components_box_is_the_union_of_the_component_boxes() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((20, 37, 53)) > 0.985  # sparse: several components per mask
    masks[3] = False  # an empty one
    got = mask_boxes(torch.from_numpy(masks))
    for mask, box in zip(masks, got.numpy(), strict=True):
        boxes, _ = component_boxes(mask)
        ref = [0, 0, 0, 0] if not len(boxes) else [*boxes[:, :2].min(0), *boxes[:, 2:].max(0)]
        assert box.tolist() == [int(v) for v in ref]
    maps = torch.from_numpy(np.where(masks, 1.0, -1.0))
    assert torch.equal(boxes_from_maps(maps, BoxRule(0.2, "max"), components="all"), got)
    with pytest.raises(ValueError, match="unknown components rule"):
        boxes_from_maps(maps, components="some")


def test_zoom_plan_windows_small_objects_only() -> None:
    coarse = torch.full((3, 360, 480), -1.0)
    coarse[0, 100:160, 200:240] = 5.0  # small: a 60-pixel window (< min side 90)
    coarse[1, 20:340, 40:440] = 5.0  # large: its window would cover 0.75 of the image
    # coarse[2] has no positive pixel: no box, no window
    plan = zoom_plan(coarse, expand=1.0, max_area=0.5)
    assert plan == [(175, 85, 265, 175), None, None]
    assert zoom_plan(coarse[1:2], expand=1.0, max_area=0.8) == [(60, 0, 420, 360)]


def test_zoom_finds_a_small_object_the_classification_pass_blurs() -> None:
    obj = (200, 100, 260, 160)  # 60 x 60 on 480 x 360: 2.1% of the image
    image = square_image(360, 480, obj)
    net = Brightness().eval()
    coarse = camloc.explain(net, image, targets=[[0]], method=CAM_BRIGHT, map_sizes=())
    zoomed = camloc.explain(net, image, targets=[[0]], method=CAM_BRIGHT, zoom=True)
    coarse_iou, zoom_iou = iou(coarse.boxes[0, 0], obj), iou(zoomed.boxes[0, 0], obj)
    # 16-pixel cells at 224 are 26 image pixels; the window (90 px, the least side) is passed at 320: 213 px
    assert zoom_iou >= 0.95 and zoom_iou > coarse_iou + 0.2, (coarse_iou, zoom_iou)
    # the classification pass is the same: classes, logits and raw maps (the identity) do not depend on the zoom
    assert torch.equal(coarse.raw, zoomed.raw) and torch.equal(coarse.all_logits, zoomed.all_logits)
    bias = get_adapter(net, feature_layer="trunk", linear_layer="fc").bias
    assert float(check_identity(zoomed.raw, zoomed.all_logits, zoomed.classes, bias)) < 1e-5
    # maps: image-sized, normalised, brightest inside the object
    assert isinstance(zoomed.maps, torch.Tensor)
    m = zoomed.maps[0, 0]
    assert m.shape == (360, 480) and float(m.min()) == 0.0 and float(m.max()) == 1.0
    inside = torch.zeros_like(m, dtype=torch.bool)
    inside[obj[1] : obj[3], obj[0] : obj[2]] = True
    assert float(m[inside].mean()) > 0.8 and float(m[~inside].mean()) < 0.1, (m[inside].mean(), m[~inside].mean())


def test_large_objects_keep_the_classification_pass_box() -> None:
    obj = (40, 20, 440, 340)  # 74% of the image: no window
    image = square_image(360, 480, obj)
    net = Brightness().eval()
    zoomed = camloc.explain(net, image, targets=[[0]], method=CAM_BRIGHT)
    coarse = camloc.explain(net, image, targets=[[0]], method=CAM_BRIGHT, map_sizes=())
    assert torch.equal(zoomed.boxes, coarse.boxes)  # one component: "all" and "largest" agree
    assert torch.allclose(zoomed.maps, coarse.maps, atol=1e-6)
    assert iou(zoomed.boxes[0, 0], obj) >= 0.8


def test_batches_of_any_sizes_give_the_one_image_results() -> None:
    net = Brightness().eval()
    images = [
        square_image(360, 480, (300, 60, 390, 150)),
        square_image(360, 480, (20, 200, 110, 290)),
        square_image(400, 300, (100, 150, 180, 230)),
    ]
    together = camloc.explain(net, images, targets=[[0, 1]] * 3, method=CAM_BRIGHT)
    assert isinstance(together.maps, list) and [tuple(m.shape) for m in together.maps] == [
        (2, 360, 480),
        (2, 360, 480),
        (2, 400, 300),
    ]
    for i, im in enumerate(images):
        alone = camloc.explain(net, im, targets=[[0, 1]], method=CAM_BRIGHT)
        assert torch.equal(alone.boxes[0], together.boxes[i])
        assert torch.allclose(alone.maps[0], together.maps[i], atol=1e-5)


def test_tensor_input_zooms_on_the_tensor() -> None:
    obj = (300, 60, 390, 150)
    arr = torch.from_numpy(np.asarray(square_image(360, 480, obj), dtype=np.float32) / 255).permute(2, 0, 1)
    x = ((arr - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])[None]
    res = camloc.explain(Brightness().eval(), x, targets=[[0]], method=CAM_BRIGHT)
    assert res.maps.shape == (1, 1, 360, 480) and iou(res.boxes[0, 0], obj) >= 0.8


def test_settings_record_the_procedure() -> None:
    net = Brightness().eval()
    x = torch.randn(1, 3, 64, 96)
    default = camloc.explain(net, x, top_k=1, method=CAM_BRIGHT)
    assert default.settings["procedure"] == "zoom" and default.settings["zoom"] == asdict(DEFAULT_ZOOM)
    assert default.settings["zoom"] == {"expand": 1.0, "max_area": 0.5, "size": 320, "components": "all"}
    assert default.settings["map_sizes"] == []
    custom = camloc.explain(net, x, top_k=1, method=CAM_BRIGHT, zoom=Zoom(1.5, 0.3, 256, "largest"))
    assert custom.settings["zoom"] == {"expand": 1.5, "max_area": 0.3, "size": 256, "components": "largest"}
    native = camloc.explain(net, x, top_k=1, method=CAM_BRIGHT, map_sizes=())
    assert native.settings["procedure"] == "classification pass" and native.settings["zoom"] is None
    off = camloc.explain(net, x, top_k=1, method=CAM_BRIGHT, zoom=False)
    assert off.settings["procedure"] == "map sizes" and off.settings["map_sizes"] == [640]
    with pytest.raises(InputError, match="not both"):
        camloc.explain(net, x, method=CAM_BRIGHT, zoom=True, map_sizes=(448,))
    with pytest.raises(InputError, match="expand must be > 0"):
        Zoom(expand=0.0)
    with pytest.raises(InputError, match="components must be"):
        Zoom(components="most")


@pytest.mark.parametrize("map_sizes", [None, (), (64, 128)], ids=["zoom", "classification-pass", "map-sizes"])
def test_boxes_false_skips_the_boxes_only(map_sizes, monkeypatch: pytest.MonkeyPatch) -> None:
    """boxes=False (what evaluate asks for) changes nothing but `boxes`, and runs no box rule except the zoom's
    window placement (one `zoom_plan` per image)."""
    from camloc.explainer import passes
    from camloc.explainer.writers import record

    net = Brightness().eval()
    images = [square_image(360, 480, (300, 60, 390, 150)), square_image(400, 300, (100, 150, 180, 230))]
    calls: list[int] = []

    def counting(*args, **kwargs):
        calls.append(1)
        return boxes_from_maps(*args, **kwargs)

    monkeypatch.setattr(passes, "boxes_from_maps", counting)
    kw = {"targets": [[0, 1]] * 2, "method": CAM_BRIGHT, "map_sizes": map_sizes}
    full = camloc.explain(net, images, **kw)
    n_full = len(calls)
    bare = camloc.explain(net, images, boxes=False, **kw)
    assert bare.boxes is None and full.boxes is not None
    assert len(calls) - n_full == (len(images) if map_sizes is None else 0) < n_full
    for name in ("classes", "scores", "logits", "raw", "maps", "map_range"):
        for a, b in zip(getattr(full, name), getattr(bare, name), strict=True):
            assert torch.equal(a, b), name
    assert full.settings == bare.settings
    with pytest.raises(ValueError, match="boxes=False"):
        record(bare, 0, "a.png")
