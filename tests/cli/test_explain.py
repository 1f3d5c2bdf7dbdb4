"""`camloc explain` end to end on generated images: files written, the JSON schema, npz contents, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc.cli import main

PRED_KEYS = {"rank": int, "class_index": int, "label": str, "score": float, "logit": float, "box": list}


def check_record(rec: dict) -> None:
    assert {"image", "width", "height", "model", "predictions"} <= set(rec)
    assert isinstance(rec["width"], int) and isinstance(rec["height"], int) and isinstance(rec["model"], str)
    for rank, pred in enumerate(rec["predictions"], start=1):
        for key, typ in PRED_KEYS.items():
            assert isinstance(pred[key], typ), (key, pred[key])
        assert pred["rank"] == rank and 0.0 <= pred["score"] <= 1.0
        x0, y0, x1, y1 = pred["box"]
        assert 0 <= x0 < x1 <= rec["width"] and 0 <= y0 < y1 <= rec["height"]
    scores = [p["score"] for p in rec["predictions"]]
    assert scores == sorted(scores, reverse=True)


def outputs(out: Path) -> list[str]:
    """The files of an output folder, relative, without camloc's hidden run-settings file."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_explain_writes_everything(picture: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    rc = main(["explain", picture, "--top-k", "3", "--out", str(out), "--format", "jsonl", "--save-maps", "--quiet"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    check_record(rec)
    assert (rec["width"], rec["height"]) == (120, 90) and len(rec["predictions"]) == 3
    assert outputs(out) == ["disc.npz", "disc_grid.png", "disc_overlay.png"]
    with np.load(out / "disc.npz") as npz:
        assert npz["classes"].tolist() == [p["class_index"] for p in rec["predictions"]]
        assert npz["maps"].shape == (3, 90, 120) and npz["maps"].dtype == np.float32
        assert npz["maps"].min() >= 0 and npz["maps"].max() <= 1
        assert npz["raw"].shape == (3, 7, 10) and npz["raw"].dtype == np.float32
    assert Image.open(out / "disc_overlay.png").size == (120, 90)


def test_json_files_and_folders(picture: str, tmp_path: Path) -> None:
    folder = tmp_path / "in" / "deeper"
    folder.mkdir(parents=True)
    Image.open(picture).save(folder / "a.png")
    Image.open(picture).convert("L").save(tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            str(tmp_path / "in"),
            "--out",
            str(out),
            "--format",
            "json",
            "--no-images",
            "--quiet",
            "--map-sizes",
            "native",
        ]
    )
    assert rc == 0
    assert outputs(out) == ["b.json", "deeper/a.json"]  # the input folder's structure is kept
    rec = json.loads((out / "deeper" / "a.json").read_text())
    check_record(rec)
    assert len(rec["predictions"]) == 5 and rec["settings"]["map_sizes"] == []


def test_bad_files_do_not_stop_the_batch(picture: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.open(picture).save(tmp_path / "good.png")
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            str(tmp_path / "broken.jpg"),
            str(tmp_path / "empty.png"),
            str(tmp_path / "good.png"),
            str(tmp_path / "missing.jpg"),
            "--out",
            str(out),
            "--format",
            "json",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "broken.jpg" in err and "empty.png: empty file" in err and "missing.jpg: no such file" in err
    assert "3 of 4 image(s) failed" in err and "Traceback" not in err
    assert (out / "good.json").exists() and (out / "good_overlay.png").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "camloc", *args], capture_output=True, text=True, env=env, timeout=300)


def test_bad_model_is_one_line_without_traceback(picture: str, tmp_path: Path) -> None:
    proc = run_cli("explain", picture, "--model", "vgg11", "--out", str(tmp_path))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("camloc: error")]
    assert len(lines) == 1 and "not CAM-exact" in lines[0] and "--method gradcam" in lines[0]
    assert "Traceback" not in proc.stderr
    proc = run_cli("explain", picture, "--model", str(tmp_path / "nothing_here"))
    assert proc.returncode == 2 and "no such checkpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_options(picture: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["explain", picture, "--map-sizes", "big", "--out", str(tmp_path)]) == 2
    assert main(["explain", picture, "--classes", "5000", "--out", str(tmp_path), "--quiet"]) == 2
    assert main(["explain", str(tmp_path / "empty_dir_nothing"), "--out", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--map-sizes" in err and "out of range" in err
