"""`Result.map_range`: each map's [min, max] before normalisation, what the box rule's threshold refers to."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import camloc
from camloc.boxes import BoxRule, boxes_from_maps
from camloc.engine import upsample
from camloc.models.gapnet import GapNet


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return GapNet(num_classes=7, final_stride=8, widths=(8, 16, 16, 16)).eval()


def test_map_range_is_the_combined_maps_extremes(one_thread) -> None:
    model = tiny()
    x = torch.randn(2, 3, 48, 64)
    res = camloc.explain(model, x, top_k=3, map_sizes=())  # one pass: the combined map is the upsampled raw CAM
    combined = upsample(res.raw.float(), (48, 64))
    assert res.map_range.shape == (2, 3, 2)
    assert torch.equal(res.map_range[..., 0], combined.flatten(2).amin(-1))
    assert torch.equal(res.map_range[..., 1], combined.flatten(2).amax(-1))
    # normalised maps x range give back the combined maps, and their boxes are the result's
    lo, hi = res.map_range[..., :1, None], res.map_range[..., 1:, None]
    back = res.maps * (hi - lo) + lo
    assert torch.allclose(back, combined, atol=1e-5 * float(combined.abs().max()))
    assert torch.equal(boxes_from_maps(combined, BoxRule(0.2, "max")), res.boxes)


def test_map_range_with_images_of_two_sizes(one_thread) -> None:
    model = tiny()
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)) for h, w in ((40, 56), (64, 48))]
    res = camloc.explain(model, images, top_k=2, map_sizes=(96,), relu=True)
    assert isinstance(res.maps, list) and res.map_range.shape == (2, 2, 2)
    for i, m in enumerate(res.maps):
        alone = camloc.explain(model, [images[i]], targets=res.classes[i : i + 1], map_sizes=(96,), relu=True)
        assert torch.allclose(res.map_range[i], alone.map_range[0], rtol=1e-5, atol=1e-6)
        assert float(res.map_range[i, :, 0].min()) >= 0.0  # ReLU'd maps have no negative values
        assert m.shape == (2, *images[i].size[::-1])


def test_map_range_per_image_when_class_counts_differ(one_thread) -> None:
    """With `min_score`, images get different numbers of classes: `map_range` is then a list like `boxes`."""
    model = tiny()
    x = torch.randn(3, 3, 48, 64) * torch.tensor([0.1, 1.0, 8.0])[:, None, None, None]
    res = camloc.explain(model, x, min_score=0.2, map_sizes=())
    assert isinstance(res.map_range, list) and len({len(c) for c in res.classes}) > 1
    for i in range(3):
        assert res.map_range[i].shape == (len(res.classes[i]), 2)
        combined = upsample(res.raw[i][None].float(), (48, 64))[0]
        assert torch.equal(res.map_range[i][:, 1], combined.flatten(1).amax(-1))
