"""Pictures: the overlay leaves the photo untouched where the map is 0 and mixes half and half where it is 1, and
grids stay bounded for extreme aspect ratios."""

from __future__ import annotations

import numpy as np

from camloc import viz


def test_overlay_weight_follows_the_map() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    heat = np.zeros((40, 60), np.float32)
    heat[:, 30:] = 1.0
    out = viz.overlay(image, heat, alpha=0.5)
    assert np.array_equal(out[:, :30], image[:, :30])  # no purple tint where the map is 0
    full = viz.colorize(np.ones((40, 30), np.float32))
    expected = np.rint(0.5 * image[:, 30:].astype(np.float64) + 0.5 * full).astype(np.uint8)
    assert np.abs(out[:, 30:].astype(int) - expected.astype(int)).max() <= 1


def test_grid_of_a_thin_image_is_bounded() -> None:
    image = np.zeros((500, 1, 3), np.uint8)
    maps = np.zeros((5, 500, 1), np.float32)
    boxes = np.array([[0, 0, 1, 500]] * 5)
    grid = viz.grid(image, maps, boxes, [f"c{i}" for i in range(5)])
    assert grid.shape[0] <= viz.PANEL_MAX_HEIGHT and grid.shape[1] <= 5 * (viz.PANEL_WIDTH + 4)
    wide = viz.grid(np.zeros((1, 500, 3), np.uint8), np.zeros((1, 1, 500), np.float32), boxes[:1], ["w"])
    assert wide.shape == (1, viz.PANEL_WIDTH, 3)
