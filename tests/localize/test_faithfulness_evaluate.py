"""`camloc evaluate --faithfulness`: the report's numbers equal the API's on the same inputs, the pointing game from
saved maps equals the model run's, refusals are one line, and torchrun's sums equal one process's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from camloc.cli import main
from camloc.localize.faithfulness import FaithfulnessSettings, faithfulness_scores, image_seed, pointing_hit

SRC = str(Path(__file__).resolve().parents[2] / "src")


def write_fixture(root: Path, n: int = 3) -> Path:
    """wsol metadata + JPEGs of a bright disc (one small enough for the pointing game's "difficult" subset)."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "meta").mkdir()
    ids, labels, sizes, locs = [], [], [], []
    for i in range(n):
        w, h = 96 + 16 * i, 80
        arr = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        cx, cy, r = 30 + 10 * i, 40, (30, 8, 32)[i % 3]
        yy, xx = np.mgrid[:h, :w]
        arr[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (240, 200, 30)
        Image.fromarray(arr).save(root / "img" / f"{i}.jpg", quality=95)
        ids.append(f"{i}.jpg")
        labels.append(f"{i}.jpg,{[948, 950, 951][i % 3]}")
        sizes.append(f"{i}.jpg,{w},{h}")
        locs.append(f"{i}.jpg,{cx - r},{cy - r},{cx + r},{cy + r}")
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes), ("localization", locs)):
        (root / "meta" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_evaluate_report_equals_the_api(default_model, tmp_path, one_thread):
    """evaluate(..., faithfulness=...) = faithfulness_scores on the classification input and the top-1 map
    resized to it; pointing game = pointing_hit on the saved true-class maps; saved maps give the same game."""
    from camloc.data import open_dataset
    from camloc.explainer.passes import explain
    from camloc.localize.evaluation import evaluate
    from camloc.preprocess import image_to_tensor

    root = write_fixture(tmp_path)
    ds = open_dataset(f"wsol:{root / 'meta'}", images=root / "img")
    fs = FaithfulnessSettings(steps=4, road_fractions=(0.5,))
    rep = evaluate(ds, model=default_model, map_sizes=(), faithfulness=fs, save_maps=str(tmp_path / "maps"))
    faith = rep["faithfulness"]
    assert rep["protocol"]["faithfulness"]["insertion_baseline"] == "blur"

    pre = default_model.camloc_info.preprocess
    rows: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("deletion", "insertion", "drop", "increase", "road_morf", "road_lerf")
    }
    hits, difficult = [], []
    for s in ds.samples:
        img = Image.open(s.image).convert("RGB")
        res = explain(default_model, img, top_k=1, map_sizes=())
        x = image_to_tensor(img, pre.input_size, pre)[None]
        assert isinstance(res.maps, torch.Tensor)  # one image: a stacked tensor
        m = F.interpolate(res.maps[:, :1].float(), size=x.shape[-2:], mode="bilinear", antialias=True)[:, 0]
        m = (m - m.min()) / (m.max() - m.min())
        out = faithfulness_scores(default_model, x, m, res.classes[:, 0], fs, seeds=[image_seed(s.image_id)])
        for k in rows:
            rows[k].append(out[k])
        gt_map = np.load(tmp_path / "maps" / f"{s.image_id}.npy")
        hits.append(pointing_hit(gt_map, s.boxes))
        x0, y0, x1, y1 = s.boxes[0]
        difficult.append((x1 - x0) * (y1 - y0) < 0.25 * gt_map.size)
    mean = {k: torch.cat(v).float().mean(0) for k, v in rows.items()}
    assert faith["n_scored"] == 3
    assert faith["deletion_auc"] == pytest.approx(mean["deletion"].item(), abs=1e-5)
    assert faith["insertion_auc"] == pytest.approx(mean["insertion"].item(), abs=1e-5)
    assert faith["average_drop"] == pytest.approx(100 * mean["drop"].item(), abs=1e-3)
    assert faith["increase_in_confidence"] == pytest.approx(100 * mean["increase"].item())
    assert faith["road"]["morf_score"] == pytest.approx(mean["road_morf"].tolist(), abs=1e-5)
    assert faith["road"]["lerf_score"] == pytest.approx(mean["road_lerf"].tolist(), abs=1e-5)
    assert faith["pointing_game"] == pytest.approx(100 * np.mean(hits))
    assert faith["pointing_difficult_n"] == sum(difficult) == 1

    saved = evaluate(ds, maps_dir=tmp_path / "maps", faithfulness=FaithfulnessSettings(metrics=("pointing-game",)))
    assert saved["faithfulness"]["pointing_game"] == faith["pointing_game"]
    assert "deletion_auc" not in saved["faithfulness"]


def test_cli_refuses_perturbation_metrics_without_a_model(tmp_path, capsys):
    root = write_fixture(tmp_path, n=1)
    (tmp_path / "maps").mkdir()
    np.save(tmp_path / "maps" / "0.jpg.npy", np.random.default_rng(0).random((80, 96)).astype(np.float32))
    common = ["evaluate", "--data", f"wsol:{root / 'meta'}", "--maps", str(tmp_path / "maps"), "--quiet"]
    assert main([*common, "--faithfulness", "deletion,pointing-game"]) == 2
    err = capsys.readouterr().err.strip()
    assert "need --model" in err and "\n" not in err and "Traceback" not in err
    assert main([*common, "--faithfulness", "pointing,road"]) == 2
    assert "unknown metric ['pointing']" in capsys.readouterr().err
    assert main([*common, "--faithfulness", "pointing-game"]) == 0
    assert "pointing_game" in capsys.readouterr().out


def test_torchrun_two_processes_match_one(tmp_path):
    """Pointing-game sums travel as a float vector: 2 processes give the same report as 1."""
    from tests.fixture_torchrun import reports_one_and_two
    from tests.fixture_wsol import make_box_fixture

    make_box_fixture(tmp_path, n=12, seed=4)
    args = ["-m", "camloc", "evaluate", "--data", f"wsol:{tmp_path / 'meta'}", "--maps", str(tmp_path / "maps")]
    one, both = reports_one_and_two([*args, "--faithfulness", "pointing-game", "--quiet", "--report"], tmp_path)
    assert both["protocol"].pop("processes") == 2
    assert one == both and one["faithfulness"]["pointing_n"] == 12
