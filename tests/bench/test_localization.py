"""Localization benchmark: scoring sanity (perfect maps score 100) and the results contract on a tiny study."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from camloc.bench.localization import Study, box_map, fix_box, reference_maps, run_study
from camloc.bench.report import write_all
from camloc.localize.scoring import Scorer, paper_box
from tests.fake_fashion import write_fake_fashion

torch.set_num_threads(1)


def test_perfect_maps_score_100_and_flat_maps_do_not():
    rng = np.random.default_rng(0)
    perfect, flat = Scorer(), Scorer()
    for _ in range(5):
        x0, y0 = rng.integers(0, 40, size=2)
        mask = np.zeros((96, 96), bool)
        mask[y0 : y0 + 30, x0 : x0 + 20] = True
        box = np.array([x0, y0, x0 + 20, y0 + 30])
        heat = mask.astype(np.float32)
        perfect.add(heat, box, mask, 3, 3, paper_box(heat), paper_box(heat))
        whole = reference_maps(96, 96)["whole image"]
        flat.add(whole, box, mask, 3, 2, np.array([0, 0, 96, 96]), np.array([0, 0, 96, 96]))
    r = perfect.result(perfect.best_threshold_index())
    assert r["top1_cls"] == r["top1_loc"] == r["gt_known_loc"] == 100.0
    assert r["maxboxacc_v2"]["mean"] == 100.0 and r["pxap"] == pytest.approx(100.0)
    f = flat.result()
    assert f["top1_cls"] == 0.0 and f["gt_known_loc"] == 0.0 and f["maxboxacc_v2"]["50"] == 0.0
    assert f["pxap"] == pytest.approx(100.0 * 600 / 96**2, rel=0.05)  # a flat map's AP = foreground share


def test_box_helpers():
    assert fix_box(np.array([-3, 5, 200, 5]), 96, 96).tolist() == [0, 5, 96, 6]
    m = box_map(np.array([2, 3, 5, 9]), 10, 10)
    assert m.sum() == 18 and m[3:9, 2:5].all()


def test_tiny_study_contract(tmp_path, monkeypatch):
    idx = write_fake_fashion(tmp_path / "fm", n_train=80, n_test=20)
    monkeypatch.chdir(tmp_path)
    study = Study(
        strides=(8, 16),
        widths=(8, 8, 16, 16),
        regressor_stride=8,
        reference_stride=8,
        train_size=32,
        val_size=8,
        test_size=12,
        epochs=1,
        batch_size=16,
        probe_train_size=0,
    )  # probe: test_probe.py
    rows, info = run_study(tmp_path / "out", study, str(idx), quiet=True, log=lambda _m: None)
    write_all(tmp_path / "out", rows, info, "camloc bench localization --out out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == json.loads(json.dumps(rows))
    assert [r["feature_resolution"] for r in saved] == [[12, 12], [6, 6], None, None, None]
    for r in saved:
        assert set(r) >= {
            "method",
            "feature_resolution",
            "top1_cls",
            "top1_loc",
            "gt_known_loc",
            "maxboxacc_v2",
            "pxap",
            "train_seconds",
        }
        assert set(r["maxboxacc_v2"]) == {"30", "50", "70", "mean"}
        for v in (r["top1_cls"], r["top1_loc"], r["gt_known_loc"], r["pxap"], *r["maxboxacc_v2"].values()):
            assert 0.0 <= v <= 100.0
    assert (tmp_path / "out" / "resolution.png").stat().st_size > 1000
    assert "| CAM, GapNet stride 8 | 12x12 |" in (tmp_path / "out" / "results.md").read_text()
    again, _ = run_study(tmp_path / "out", study, str(idx), quiet=True, log=lambda _m: None)  # reuses the nets
    assert [r["maxboxacc_v2"] for r in again] == [r["maxboxacc_v2"] for r in rows]
