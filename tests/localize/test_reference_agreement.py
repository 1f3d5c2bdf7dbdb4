"""Our MaxBoxAcc / MaxBoxAccV2 / PxAP equal clovaai/wsolevaluation's on a seeded fixture.

The literals below were printed by the reference's own BoxEvaluator / MaskEvaluator (commit 96f4b88), run from a
temporary folder outside this repository by the driver tests/reference/run_wsolevaluation.py:

    git clone https://github.com/clovaai/wsolevaluation /tmp/wsolref
    PYTHONPATH=src python tests/reference/run_wsolevaluation.py /tmp/wsolref /tmp/wsolfix 0.01 0.001

(`box_<interval>_largest` is multi_contour_eval=False, `_all` is True; iou_threshold_list [30, 50, 70];
`_curve` is, per IoU level, [sum over thresholds of the hit counts, the same weighted by threshold index], a
checksum of the whole accuracy-vs-threshold curve.)
"""

from __future__ import annotations

import numpy as np
import pytest

from camloc.data import open_dataset
from camloc.localize.evaluation import Evaluator, Settings, load_map
from tests.fixture_wsol import make_box_fixture, make_mask_fixture

REFERENCE = {
    "box_0.01_largest": [76.66666666666667, 51.666666666666664, 34.666666666666664],
    "box_0.01_all": [77.33333333333333, 51.666666666666664, 34.666666666666664],
    "pxap_0.01": 24.873594647325074,
}
REFERENCE_CURVES = {
    "box_0.01_largest_curve": [[15315, 556354], [9817, 334432], [5931, 192684]],
    "box_0.01_all_curve": [[15519, 564753], [9872, 336745], [5933, 192737]],
}
REFERENCE_FINE = {
    "box_0.001_largest": [76.66666666666667, 51.666666666666664, 34.666666666666664],
    "box_0.001_all": [77.33333333333333, 52.0, 34.666666666666664],
    "pxap_0.001": 24.894168888144407,
}


def _evaluate(root, interval: float, masks: bool) -> Evaluator:
    if masks:
        meta = make_mask_fixture(root)
        ds = open_dataset(f"wsol:{meta}", mask_root=root / "masks")
    else:
        meta = make_box_fixture(root)
        ds = open_dataset(f"wsol:{meta}")
    ev = Evaluator(Settings(interval=interval))
    for s in ds:
        ev.add(s, load_map(root / "maps", s.image_id))
    return ev


@pytest.fixture(scope="module")
def boxes_001(tmp_path_factory) -> Evaluator:
    return _evaluate(tmp_path_factory.mktemp("ref_boxes"), 0.01, masks=False)


def test_maxboxacc_equals_reference(boxes_001):
    rep = boxes_001.report()
    assert rep["n_images"] == 300
    assert [rep["maxboxacc"][k] for k in ("30", "50", "70")] == REFERENCE["box_0.01_largest"]
    assert [rep["maxboxacc_v2"][k] for k in ("30", "50", "70")] == REFERENCE["box_0.01_all"]


def test_accuracy_curves_equal_reference(boxes_001):
    idx = np.arange(len(boxes_001.thresholds))
    for v, name in enumerate(("largest", "all")):
        ours = [[int(h.sum()), int((h * idx).sum())] for h in boxes_001.box.hits[v]]
        assert ours == REFERENCE_CURVES[f"box_0.01_{name}_curve"]


def test_pxap_equals_reference(tmp_path):
    ev = _evaluate(tmp_path, 0.01, masks=True)
    assert ev.report()["pxap"] == REFERENCE["pxap_0.01"]


@pytest.mark.slow
@pytest.mark.parametrize("masks", [False, True])
def test_fine_interval_equals_reference(tmp_path, masks):
    rep = _evaluate(tmp_path, 0.001, masks=masks).report()
    if masks:
        assert rep["pxap"] == REFERENCE_FINE["pxap_0.001"]
    else:
        assert [rep["maxboxacc"][k] for k in ("30", "50", "70")] == REFERENCE_FINE["box_0.001_largest"]
        assert [rep["maxboxacc_v2"][k] for k in ("30", "50", "70")] == REFERENCE_FINE["box_0.001_all"]
