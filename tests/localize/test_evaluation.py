"""`camloc evaluate`: report keys, calibration, bad maps, COCO results, a model run, and torchrun with 2 processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc.cli import main
from tests.fixture_torchrun import reports_one_and_two
from tests.fixture_wsol import make_box_fixture, make_mask_fixture


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("boxfix")
    make_box_fixture(root, n=24, seed=3)
    return root


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_report_keys_and_table(boxes, tmp_path, capsys):
    report = tmp_path / "r.json"
    rc, out, _ = run_cli(
        [
            "evaluate",
            "--data",
            f"wsol:{boxes / 'meta'}",
            "--maps",
            str(boxes / "maps"),
            "--report",
            str(report),
            "--calibrate-on",
            f"wsol:{boxes / 'meta'}",
            "--quiet",
        ],
        capsys,
    )
    assert rc == 0 and "maxboxacc_v2" in out and "gt_known_loc" in out
    rep = json.loads(report.read_text())
    assert rep["n_images"] == 24 and set(rep["maxboxacc"]) == {"30", "50", "70", "mean"}
    assert rep["maxboxacc"]["mean"] == pytest.approx(np.mean([rep["maxboxacc"][k] for k in ("30", "50", "70")]))
    assert rep["maxboxacc_v2"]["50"] >= rep["maxboxacc"]["50"]  # all contours include the largest
    # calibrating on the same split reproduces the best-threshold numbers exactly
    assert rep["calibrated"]["maxboxacc"] == rep["maxboxacc"]
    assert rep["cam_threshold"]["calibrated"]["maxboxacc"] == rep["cam_threshold"]["maxboxacc"]
    assert rep["protocol"]["cam_thresholds"] == "np.arange(0, 1, 0.01)"
    assert rep["problems"]["constant_map"] == 1  # map 5 is all zeros
    assert "top1_loc" not in rep  # no model, no classification


def test_pxap_report(tmp_path, capsys):
    make_mask_fixture(tmp_path, n=12, seed=5)
    rep_path = tmp_path / "r.json"
    rc, out, _ = run_cli(
        [
            "evaluate",
            "--data",
            f"wsol:{tmp_path / 'meta'}",
            "--mask-root",
            str(tmp_path / "masks"),
            "--maps",
            str(tmp_path / "maps"),
            "--report",
            str(rep_path),
            "--quiet",
        ],
        capsys,
    )
    rep = json.loads(rep_path.read_text())
    assert rc == 0 and 0 < rep["pxap"] < 100 and "maxboxacc" not in rep and "pxap" in out


def test_bad_maps(boxes, tmp_path, capsys):
    maps = tmp_path / "maps"
    ids = (boxes / "meta" / "image_ids.txt").read_text().split()
    for i, image_id in enumerate(ids):
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        m = np.load(boxes / "maps" / f"{image_id}.npy")
        np.save(maps / f"{image_id}.npy", np.full((7, 7), np.nan) if i == 0 else m[None] if i == 1 else m)
    rep_path = tmp_path / "r.json"
    rc, _, _ = run_cli(
        ["evaluate", "--data", f"wsol:{boxes / 'meta'}", "--maps", str(maps), "--report", str(rep_path), "--quiet"],
        capsys,
    )
    assert rc == 0 and json.loads(rep_path.read_text())["problems"]["nan_map"] == 1  # counted, not fatal
    np.save(maps / f"{ids[2]}.npy", np.zeros((3, 4, 5)))
    rc, _, err = run_cli(["evaluate", "--data", f"wsol:{boxes / 'meta'}", "--maps", str(maps), "--quiet"], capsys)
    assert rc == 2 and f"{ids[2]}.npy: score map of shape (3, 4, 5)" in err and "Traceback" not in err
    os.remove(maps / f"{ids[3]}.npy")
    np.save(maps / f"{ids[2]}.npy", np.zeros((4, 5)))
    rc, _, err = run_cli(["evaluate", "--data", f"wsol:{boxes / 'meta'}", "--maps", str(maps), "--quiet"], capsys)
    assert rc == 2 and f"no score map for image '{ids[3]}'" in err


def test_coco_results_are_scored_by_pycocotools(tmp_path, capsys):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns = [], []
    maps = tmp_path / "maps"
    maps.mkdir()
    for i in range(1, 4):
        w, h = 60 + 10 * i, 50
        x, y, bw, bh = 5 * i, 8, 20 + i, 15
        images.append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
        anns.append(
            {
                "id": i,
                "image_id": i,
                "category_id": 5 + i % 2,
                "bbox": [x, y, bw, bh],
                "area": bw * bh,
                "iscrowd": 0,
                "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]],
            }
        )
        m = np.zeros((h, w), np.float32)
        m[y : y + bh, x : x + bw] = 1  # a perfect map: the GT-known box is the GT box
        np.save(maps / f"{i}.npy", m)
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 5, "name": "a"}, {"id": 6, "name": "b"}]}
        )
    )
    res_file = tmp_path / "res.json"
    rc, _, _ = run_cli(
        ["evaluate", "--data", f"coco:{gt_file}", "--maps", str(maps), "--coco-results", str(res_file), "--quiet"],
        capsys,
    )
    assert rc == 0
    gt = COCO(str(gt_file))
    ev = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP@[.5:.95] of perfect boxes


def _write_image_fixture(root: Path, n: int = 4) -> Path:
    """wsol metadata + JPEG images of a bright disc, for a model run."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    ids, labels, sizes, locs = [], [], [], []
    for i in range(n):
        w, h = 96 + 16 * i, 80
        arr = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        cx, cy, r = 30 + 10 * i, 40, 18
        yy, xx = np.mgrid[:h, :w]
        arr[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (240, 200, 30)
        Image.fromarray(arr).save(root / "img" / f"{i}.jpg", quality=95)
        ids.append(f"{i}.jpg")
        labels.append(f"{i}.jpg,{[948, 950, 951, 954][i]}")  # apple, orange, lemon, banana
        sizes.append(f"{i}.jpg,{w},{h}")
        locs.append(f"{i}.jpg,{cx - r},{cy - r},{cx + r},{cy + r}")
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes), ("localization", locs)):
        (root / "meta").mkdir(exist_ok=True)
        (root / "meta" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_model_evaluation_library(default_model, tmp_path):
    from camloc.data import open_dataset
    from camloc.localize.evaluation import evaluate

    root = _write_image_fixture(tmp_path, n=2)
    ds = open_dataset(f"wsol:{root / 'meta'}", images=root / "img")
    a = evaluate(ds, model=default_model, map_sizes=(), save_maps=str(tmp_path / "maps"))
    b = evaluate(ds, maps_dir=tmp_path / "maps")
    assert {"top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc"} <= set(a) and "top1_cls" not in b
    assert a["top1_loc"] <= a["top1_cls"] and a["top5_loc"] <= a["top5_cls"] and a["top1_loc"] <= a["top5_loc"]
    for key in ("maxboxacc", "maxboxacc_v2", "gt_known_loc"):
        assert a[key] == b[key]  # saved maps re-evaluate to the same numbers
    assert np.load(tmp_path / "maps" / "0.jpg.npy").shape == (80, 96)  # original image size


def test_model_maps_come_without_boxes(default_model, tmp_path, monkeypatch):
    """evaluate boxes the maps it scores itself, so its explain calls box nothing (and the maps are explain's)."""
    import camloc
    from camloc.data import open_dataset
    from camloc.explainer import passes
    from camloc.localize.evaluation import iter_model_maps

    root = _write_image_fixture(tmp_path, n=2)
    ds = open_dataset(f"wsol:{root / 'meta'}", images=root / "img")
    calls = []
    monkeypatch.setattr(passes, "boxes_from_maps", lambda *a, **k: calls.append(1))
    items = list(iter_model_maps(default_model, ds, map_sizes=()))
    assert not calls and len(items) == 2
    monkeypatch.undo()
    sample, _, _, classes, maps = items[1]
    ref = camloc.explain(default_model, str(sample.image), map_sizes=())
    assert np.array_equal(ref.classes[0].numpy(), classes)
    assert all(np.array_equal(m, r.numpy()) for m, r in zip(maps, ref.maps[0], strict=True))


@pytest.mark.slow
def test_model_run_and_saved_maps_give_the_same_numbers(tmp_path, capsys):
    root = _write_image_fixture(tmp_path)
    common = ["evaluate", "--data", f"wsol:{root / 'meta'}", "--quiet"]
    rc, _, err = run_cli(
        [
            *common,
            "--images",
            str(root / "img"),
            "--model",
            "default",
            "--map-sizes",
            "native",
            "--save-maps",
            str(tmp_path / "maps"),
            "--report",
            str(tmp_path / "a.json"),
        ],
        capsys,
    )
    assert rc == 0, err
    rc, _, _ = run_cli([*common, "--maps", str(tmp_path / "maps"), "--report", str(tmp_path / "b.json")], capsys)
    a, b = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    assert {"top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc"} <= set(a)
    assert a["top1_loc"] <= a["top1_cls"] and a["top5_loc"] <= a["top5_cls"] and a["top1_loc"] <= a["top5_loc"]
    for key in ("maxboxacc", "maxboxacc_v2", "gt_known_loc"):
        assert a[key] == b[key]
    assert np.load(tmp_path / "maps" / "0.jpg.npy").shape == (80, 96)  # original image size


def test_torchrun_two_processes_match_one(boxes, tmp_path):
    args = ["-m", "camloc", "evaluate", "--data", f"wsol:{boxes / 'meta'}", "--maps", str(boxes / "maps")]
    one, both = reports_one_and_two([*args, "--quiet", "--report"], tmp_path)
    assert both["protocol"].pop("processes") == 2
    assert one == both


def test_mask_size_mismatch_is_counted_not_fatal():
    from camloc.data.base import Sample
    from camloc.localize.evaluation import Evaluator, Settings

    fg = np.zeros((40, 60), bool)
    fg[10:20, 10:30] = True
    ignore = np.zeros((20, 30), bool)  # another size than the foreground mask
    sample = Sample("x", None, 0, np.zeros((0, 4)), mask_loader=lambda: (fg, ignore))
    ev = Evaluator(Settings())
    m = np.zeros((40, 60))
    m[10:20, 10:30] = 1
    ev.add(sample, m)
    rep = ev.report()
    assert rep["problems"]["mask_size_mismatch"] == 1 and rep["pxap"] > 99  # map resized bicubic: edges blur


def test_undecodable_image_names_the_file(default_model, tmp_path):
    from camloc.data import open_dataset
    from camloc.errors import InputError
    from camloc.localize.evaluation import evaluate

    root = _write_image_fixture(tmp_path, n=2)
    (root / "img" / "1.jpg").write_bytes(b"not a jpeg at all")
    ds = open_dataset(f"wsol:{root / 'meta'}", images=root / "img")
    with pytest.raises(InputError, match=r"1\.jpg"):
        evaluate(ds, model=default_model, map_sizes=())


def _rect_sample(w: int = 300, h: int = 200):
    from camloc.data.base import Sample

    box = np.array([[40.0, 30.0, 160.0, 120.0]])
    m = np.zeros((h, w), np.float32)
    m[30:120, 40:160] = 1
    return Sample("r", None, 2, box, size=(w, h)), m


def test_native_resolution_variant_and_release_rule():
    from camloc.localize.evaluation import Evaluator, Settings

    sample, m = _rect_sample()
    native = Evaluator(Settings(resolution="native"))
    native.add(sample, m)
    rep = native.report()
    assert rep["maxboxacc"]["70"] == 100.0 and rep["protocol"]["wsol"].startswith("NATIVE")
    for rule in ("paper", "release"):
        ev = Evaluator(Settings(box_generator=rule))
        other = np.zeros_like(m)
        other[150:190, 200:290] = 1
        # true class 2 ranked second: top-1 loc misses, top-5 loc hits
        ev.add(sample, m, 2, np.array([7, 2, 3, 4, 5]), [other, m, other, other, other])
        rep = ev.report()
        assert (rep["top1_loc"], rep["top5_loc"], rep["gt_known_loc"], rep["top5_cls"]) == (0.0, 100.0, 100.0, 100.0)
        assert ("release" in rep["protocol"]["paper_boxes"]) == (rule == "release")


def test_native_pxap_uses_the_mask_size(tmp_path):
    from camloc.data import open_dataset
    from camloc.localize.evaluation import Settings, evaluate

    make_mask_fixture(tmp_path, n=6, seed=2)
    ds = open_dataset(f"wsol:{tmp_path / 'meta'}", mask_root=tmp_path / "masks")
    native = evaluate(ds, maps_dir=tmp_path / "maps", settings=Settings(resolution="native"))
    assert 0 < native["pxap"] < 100 and native["problems"]["mask_size_mismatch"] == 0
