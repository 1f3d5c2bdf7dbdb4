"""`camloc explain --zoom`: the procedure chosen on the command line is the one recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camloc.cli import main


def run_json(picture: str, out: Path, *extra: str) -> dict:
    rc = main(
        ["explain", picture, "--out", str(out), "--format", "json", "--no-images", "--quiet", "--top-k", "2", *extra]
    )
    assert rc == 0
    return json.loads((out / "disc.json").read_text())["settings"]


def test_zoom_options(picture: str, tmp_path: Path) -> None:
    assert run_json(picture, tmp_path / "a")["zoom"] == {
        "expand": 1.0,
        "max_area": 0.5,
        "size": 320,
        "components": "all",
    }
    s = run_json(picture, tmp_path / "b", "--zoom", "1.5,0.4,256,largest")
    assert s["procedure"] == "zoom" and s["zoom"] == {
        "expand": 1.5,
        "max_area": 0.4,
        "size": 256,
        "components": "largest",
    }
    s = run_json(picture, tmp_path / "c", "--zoom", "off")
    assert s["procedure"] == "map sizes" and s["map_sizes"] == [640] and s["zoom"] is None
    s = run_json(picture, tmp_path / "d", "--map-sizes", "320")
    assert s["procedure"] == "map sizes" and s["map_sizes"] == [320]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zoom", "1.0,0.5"], "is not 'on', 'off' or EXPAND,MAX_AREA,SIZE"),
        (["--zoom", "1.0,2.0,320"], "max_area in"),
        (["--zoom", "on", "--map-sizes", "448"], "not both"),
    ],
)
def test_bad_zoom_options_say_what_is_wrong(
    picture: str, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    rc = main(["explain", picture, "--out", str(tmp_path), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc != 0 and message in err and "Traceback" not in err
