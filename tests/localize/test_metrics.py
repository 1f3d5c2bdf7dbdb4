"""Metrics: hand-computed cases, the fast box path against the straightforward loop, accumulator merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from camloc.localize._pixel_histograms import masked_histograms
from camloc.localize._release_boxes import relative_erosion, release_boxes, release_guesses
from camloc.localize._wsol_boxes import contour_box_sets, contour_boxes_reference
from camloc.localize.metrics import (
    BoxAccuracy,
    ClassLocAccuracy,
    PixelAP,
    box_iou,
    cam_thresholds,
    prepare_scoremap,
    resize_boxes_wsol,
    wsol_iou,
)
from tests.fixture_wsol import make_map

T4 = np.arange(0, 1, 0.25)


# ------------------------------------------------------------------------------------------------ IoU


def test_wsol_iou_hand_values():
    # inclusive boxes: intersection x 3..4, y 2..5 = 2 * 4 = 8; areas 25 and 10 -> 8 / 27
    assert wsol_iou(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0] == pytest.approx(8 / 27)
    # a zero box is one pixel under the +1 convention
    assert wsol_iou(np.zeros((3, 4)), np.zeros((2, 4))).tolist() == [[1.0] * 2] * 3
    assert wsol_iou(np.array([[0, 0, 9, 9]]), np.array([[10, 10, 20, 20]]))[0, 0] == 0.0


def test_box_iou_exclusive_hand_values():
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(50 / 150)
    assert box_iou(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == 0.0


boxes_st = st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 6), st.integers(0, 6)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


def _raster(box, inclusive: bool) -> np.ndarray:
    grid = np.zeros((20, 20), bool)
    x0, y0, x1, y1 = box
    grid[y0 : y1 + inclusive, x0 : x1 + inclusive] = True
    return grid


@given(boxes_st, boxes_st)
def test_iou_equals_pixel_count_iou(a, b):
    for inclusive, fn in ((True, wsol_iou), (False, box_iou)):
        ra, rb = _raster(a, inclusive), _raster(b, inclusive)
        union = (ra | rb).sum()
        expected = (ra & rb).sum() / union if union else 0.0
        got = fn(np.array([a]), np.array([b]))[0, 0]
        assert got == pytest.approx(expected)
        assert got == pytest.approx(fn(np.array([b]), np.array([a]))[0, 0])


def test_resize_boxes_truncates_like_the_reference():
    # 10*224/300 = 7.47, 20*224/200 = 22.4, 110*224/300 = 82.13, 150*224/200 = 168
    assert resize_boxes_wsol(np.array([[10, 20, 110, 150]]), (300, 200)).tolist() == [[7, 22, 82, 168]]


# ------------------------------------------------------------------------------------- contour boxes


def test_one_box():
    m = np.zeros((224, 224))
    m[50:100, 60:130] = 1
    found = contour_box_sets(m, T4)
    assert found.largest.tolist() == [[60, 50, 130, 100]] * 4
    assert found.owner.tolist() == [0, 1, 2, 3]


def test_nested_contours_count_the_hole_border():
    m = np.zeros((224, 224))
    m[40:120, 40:120] = 1
    m[60:100, 60:100] = 0
    found = contour_box_sets(m, T4)
    assert found.largest[1].tolist() == [40, 40, 120, 120]
    # RETR_TREE: the hole's border is traced on the foreground pixels around it
    assert sorted(found.boxes[found.owner == 1].tolist()) == [[40, 40, 120, 120], [59, 59, 101, 101]]


def test_empty_and_constant_maps():
    zero = contour_box_sets(np.zeros((224, 224)), T4)
    assert zero.largest.tolist() == [[0, 0, 0, 0]] * 4 and zero.boxes.tolist() == [[0, 0, 0, 0]] * 4
    const = contour_box_sets(np.full((224, 224), 0.5), T4)  # u8 = 127 > int(t * 127) everywhere
    assert const.largest.tolist() == [[0, 0, 223, 223]] * 4


def test_border_box_is_clipped_to_223():
    m = np.zeros((224, 224))
    m[150:, 180:] = 1
    assert contour_box_sets(m, T4).largest[2].tolist() == [180, 150, 223, 223]


def test_largest_versus_all_contours_and_several_gt_boxes():
    m = np.zeros((224, 224))
    m[10:110, 10:110] = 1.0  # big blob
    m[150:170, 150:170] = 0.9  # small blob
    acc = BoxAccuracy(np.array([0.5]), (50,))
    acc.accumulate(m, np.array([[150, 150, 169, 169], [0, 200, 5, 223]]))  # GT on the small blob only
    assert acc.hits[:, 0, 0].tolist() == [0, 1]  # largest contour misses, all contours hit
    acc.accumulate(m, np.array([[10, 10, 110, 110], [150, 150, 169, 169]]))  # both blobs annotated
    assert acc.hits[:, 0, 0].tolist() == [1, 2]
    assert acc.summary()["maxboxacc_v2"]["50"] == 100.0


smooth_maps = arrays(np.uint8, (12, 16), elements=st.integers(0, 5)).map(
    lambda a: np.kron(a, np.ones((3, 3))).astype(np.float64) / 5
)


def _as_sets(found):
    return found.largest.tolist(), sorted(zip(found.owner.tolist(), map(tuple, found.boxes.tolist()), strict=False))


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        smooth_maps,
        arrays(np.float64, (9, 11), elements=st.floats(0, 1)),
        arrays(np.uint8, (14, 13), elements=st.integers(0, 7)).map(lambda a: a / 7.0),
    ),
    st.sampled_from([0.01, 0.1, 0.25]),
)
def test_fast_path_gives_the_loops_boxes(m, interval):
    """contour_box_sets gives the same largest boxes and, per threshold, the same multiset of boxes as the
    straightforward findContours loop (smooth maps with nested holes, noise, few-valued maps full of ties)."""
    th = cam_thresholds(interval)
    assert _as_sets(contour_box_sets(m, th)) == _as_sets(contour_boxes_reference(m, th))


def test_fast_path_on_the_fixture_kinds():
    """Full-size maps of every fixture kind (blobs, rings with holes, blocky ties, noise) at 100 thresholds."""
    rng = np.random.default_rng(7)
    th = cam_thresholds(0.01)
    for kind in ("blob", "ring", "blocky", "noisy", "zeros", "constant"):
        m = make_map(rng, kind)
        assert _as_sets(contour_box_sets(m, th)) == _as_sets(contour_boxes_reference(m, th)), kind


@settings(max_examples=40, deadline=None)
@given(smooth_maps)
def test_boxes_cover_the_mask(m):
    """Every foreground pixel lies in some all-contours box; the largest box is one of them."""
    th = cam_thresholds(0.25)
    found = contour_box_sets(m, th)
    u8 = (m * 255).astype(np.uint8)
    for k, t in enumerate(th):
        ys, xs = np.nonzero(u8 > int(t * u8.max()))
        boxes = found.boxes[found.owner == k]
        assert found.largest[k].tolist() in boxes.tolist()
        if len(xs):
            x1 = np.minimum(boxes[:, 2], m.shape[1] - 1)
            inside = (
                (xs[:, None] >= boxes[:, 0])
                & (xs[:, None] <= x1)
                & (ys[:, None] >= boxes[:, 1])
                & (ys[:, None] <= boxes[:, 3])
            )
            assert inside.any(axis=1).all()


# ------------------------------------------------------------------------------------------- score maps


def test_prepare_scoremap_rules():
    good = np.linspace(0, 1, 224 * 224).reshape(224, 224)
    assert prepare_scoremap(good)[0] is not None and np.array_equal(prepare_scoremap(good)[0], good)
    small, problem = prepare_scoremap(np.arange(49.0).reshape(7, 7))
    assert small.shape == (224, 224) and problem is None and small.min() == 0 and small.max() == 1
    assert prepare_scoremap(np.full((7, 7), np.nan))[1] == "nan_map"
    assert prepare_scoremap(np.full((7, 7), 3.0))[1] == "constant_map"
    with pytest.raises(ValueError):
        prepare_scoremap(np.zeros((2, 3, 4)))


# ------------------------------------------------------------------------------------------------ PxAP


def test_pxap_perfect_and_reversed_maps():
    fg = np.zeros((224, 224), bool)
    fg[:, :100] = True
    ap = PixelAP(cam_thresholds(0.01))
    ap.accumulate(fg.astype(np.float64), fg)
    assert ap.value() == pytest.approx(100.0)
    worst = PixelAP(cam_thresholds(0.01))
    worst.accumulate((~fg).astype(np.float64), fg)  # foreground scored 0 -> precision = share of fg
    assert worst.value() == pytest.approx(100.0 * fg.mean())


def test_pxap_ignore_region_and_histogram_edges():
    th = cam_thresholds(0.01)
    ap = PixelAP(th)
    values = np.concatenate([th, [1.0, 0.005, 0.999]])  # exactly on the bin edges and between
    expected, _ = np.histogram(values, bins=np.append(th, [1.0, 2.0, 3.0]))
    ones = np.ones(len(values), bool)
    assert masked_histograms(values, ones, None, ap.edges)[0].tolist() == expected.tolist()
    m = np.array([[0.9, 0.9], [0.1, 0.8]])
    fg = np.array([[True, False], [False, False]])
    ignore = np.array([[False, True], [False, True]])
    ap.accumulate(m, fg, ignore)
    assert ap.hist[0].sum() == 1 and ap.hist[1].sum() == 1  # the two ignored pixels count for neither
    assert ap.value() == pytest.approx(100.0)


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float64, 60, elements=st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.3, 0.57, 1.0]))),
    arrays(np.bool_, 60),
    arrays(np.bool_, 60),
    st.one_of(
        st.sampled_from([0.01, 0.001, 0.3]).map(lambda i: np.append(cam_thresholds(i), [1.0, 2.0, 3.0])),
        arrays(np.float64, 7, elements=st.floats(0, 1), unique=True).map(np.sort),
    ),
)
def test_masked_histograms_equal_numpy(values, fg, ignore, edges):
    """Foreground / background histograms equal np.histogram of the masked values, for the PxAP edges and for
    arbitrary increasing edges (the bin guess is only a start)."""
    got = masked_histograms(values, fg, ignore, edges)
    assert got[0].tolist() == np.histogram(values[fg], bins=edges)[0].tolist()
    assert got[1].tolist() == np.histogram(values[~fg & ~ignore], bins=edges)[0].tolist()


def test_accumulators_merge_exactly():
    rng = np.random.default_rng(0)
    th = cam_thresholds(0.05)
    whole, a, b = BoxAccuracy(th), BoxAccuracy(th), BoxAccuracy(th)
    pw, pa, pb = PixelAP(th), PixelAP(th), PixelAP(th)
    for i in range(6):
        m = rng.random((20, 30))
        gt = np.array([[2, 3, 15, 12]])
        fg = m > 0.6
        for acc, ap in ((whole, pw), (a, pa) if i % 2 else (b, pb)):
            acc.accumulate(m, gt)
            ap.accumulate(m, fg)
    a.merge(b)
    pa.merge(pb)
    assert a.counts().tolist() == whole.counts().tolist() and a.n == 6
    assert pa.value() == pw.value()


# ------------------------------------------------------------------------------- paper loc counters


def test_class_loc_accuracy_hand_case():
    acc = ClassLocAccuracy()
    gt = np.array([[10, 10, 50, 50]])
    good, bad = np.array([10, 10, 50, 50]), np.array([60, 60, 90, 90])
    # top-1 right with a good box
    acc.accumulate(3, gt, good, np.array([3, 1, 2, 4, 5]), np.array([3, 1, 2, 4, 5]), np.stack([good] + [bad] * 4))
    # class right only at rank 2, its box good; GT-known box bad
    acc.accumulate(
        3, gt, bad, np.array([1, 3, 2, 4, 5]), np.array([1, 3, 2, 4, 5]), np.stack([good, good, bad, bad, bad])
    )
    s = acc.summary()
    assert s == {"gt_known_loc": 50.0, "top1_cls": 50.0, "top5_cls": 100.0, "top1_loc": 50.0, "top5_loc": 100.0}


# ------------------------------------------------------------------------------------ release boxes


def test_release_generator_on_a_rectangle():
    m = np.zeros((224, 224))
    m[50:100, 60:130] = 1
    # the relative erosion strips the one-pixel rim (distance 1 of max 25 -> 10 of 255, not > 10);
    # the three thresholds give the same box and the release's merge loop keeps two of the three copies
    assert release_boxes(m).tolist() == [[61, 51, 129, 99]] * 2
    cls, boxes = release_guesses([7, 8, 9], [m, m, m])
    assert cls.tolist() == [7, 7, 8, 8, 9] and boxes.shape == (5, 4)


def test_relative_erosion_edge_cases():
    assert relative_erosion(np.ones((5, 5), bool)).all()
    assert not relative_erosion(np.zeros((5, 5), bool)).any()
    assert release_boxes(np.zeros((30, 30))).shape == (0, 4)
