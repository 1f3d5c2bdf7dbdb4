"""The batch path of `camloc explain`: unique output names, lazy walking, --resume, --from-list, whole outputs
under write errors and signals, file modes, and torchrun sharding against one process."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camloc.cli import main
from camloc.explainer import runner, writers
from camloc.explainer.inputs import output_name, walk_images
from tests.fixture_tiny import photo, tiny_checkpoint

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ck"))


def files(out: Path) -> list[str]:
    """Output files, relative, without hidden ones (the run-settings file)."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))


def explain(tiny: str, *args: str) -> int:
    return main(["explain", "--model", tiny, "--quiet", "--map-sizes", "native", "--workers", "1", *args])


def test_same_stems_in_several_folders_get_unique_names(tiny: str, tmp_path: Path) -> None:
    c = tmp_path / "c"
    for rel in ("a/x.jpg", "b/x.jpg", "x-1.jpg", "x.png", "x.jpg", "x.jpg.png"):
        photo(c / rel)
    out = tmp_path / "out"
    assert explain(tiny, str(c), "--out", str(out), "--format", "json", "--no-images") == 0
    # x.jpg / x.png share a stem, and x.jpg.png's stem is the file x.jpg: all three keep their suffix
    assert files(out) == ["a/x.json", "b/x.json", "x-1.json", "x.jpg.json", "x.jpg.png.json", "x.png.json"]
    images = {json.loads((out / f).read_text())["image"] for f in files(out)}
    assert len(images) == 6
    # files named on the command line: relative to their common folder
    out2 = tmp_path / "out2"
    assert (
        explain(
            tiny, str(c / "a" / "x.jpg"), str(c / "b" / "x.jpg"), "--out", str(out2), "--no-images", "--format", "json"
        )
        == 0
    )
    assert files(out2) == ["a/x.json", "b/x.json"]


def test_long_names_are_shortened_stably(tmp_path: Path) -> None:
    long = tmp_path / ("n" * 250 + ".jpg")
    name = output_name(long, tmp_path)
    assert len(name.encode()) <= 180 and name == output_name(long, tmp_path)
    assert name != output_name(tmp_path / ("n" * 249 + "m.jpg"), tmp_path)


def test_long_input_name_is_explained(tiny: str, tmp_path: Path) -> None:
    photo(tmp_path / "in" / ("é" * 120 + ".png"))  # 240 bytes of name: `<name>_overlay.png` would not fit
    out = tmp_path / "out"
    assert explain(tiny, str(tmp_path / "in"), "--out", str(out)) == 0
    names = files(out)
    assert len(names) == 2 and all("~" in n for n in names)


def test_walk_is_lazy_skips_the_output_folder_and_cuts_link_loops(tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    photo(tmp_path / "in" / "sub" / "b.png")
    (tmp_path / "in" / "sub" / "loop").symlink_to(tmp_path / "in")
    (tmp_path / "in" / "out").mkdir()
    photo(tmp_path / "in" / "out" / "a_overlay.png")
    (tmp_path / "in" / ".a.png.x1y2.tmp.png").write_bytes(b"half")
    walk = walk_images(tmp_path / "in", exclude=[tmp_path / "in" / "out"])
    assert next(walk).name in {"a.png", "b.png"}  # a generator: nothing is listed first
    found = sorted(p.name for p in [*walk_images(tmp_path / "in", exclude=[tmp_path / "in" / "out"])])
    assert found == ["a.png", "b.png"]


def test_out_inside_the_input_folder_is_not_explained_again(tiny: str, tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    out = tmp_path / "results"
    assert explain(tiny, str(tmp_path), "--out", str(out)) == 0
    assert explain(tiny, str(tmp_path), "--out", str(out)) == 0
    assert files(out) == ["a_grid.png", "a_overlay.png"]


def test_resume_redoes_missing_and_damaged_outputs_only(
    tiny: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for i in range(4):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    out = tmp_path / "out"
    assert explain(tiny, str(tmp_path / "in"), "--out", str(out), "--format", "json") == 0
    (out / "p0_grid.png").unlink()
    (out / "p1.json").write_text('{"image": ')  # cut short
    data = (out / "p2_overlay.png").read_bytes()
    (out / "p2_overlay.png").write_bytes(data[: len(data) // 2])
    kept = (out / "p3.json").stat().st_mtime_ns
    capsys.readouterr()
    assert (
        main(
            [
                "explain",
                str(tmp_path / "in"),
                "--model",
                tiny,
                "--map-sizes",
                "native",
                "--out",
                str(out),
                "--format",
                "json",
                "--resume",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "wrote results for 3 image(s) to" in err and "(1 already complete, skipped)" in err
    assert all(runner.is_complete(out / f) for f in files(out)) and len(files(out)) == 12
    assert (out / "p3.json").stat().st_mtime_ns == kept
    # other settings into the same folder are refused with --resume
    assert explain(tiny, str(tmp_path / "in"), "--out", str(out), "--format", "json", "--resume", "--top-k", "2") == 2
    assert "other settings (top_k" in capsys.readouterr().err


def test_from_list_file_and_stdin(tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = photo(tmp_path / "a.png"), photo(tmp_path / "d" / "b.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\n{a}\n\n{b}\n")
    monkeypatch.chdir(tmp_path)
    assert explain(tiny, "--from-list", str(listing), "--out", "o1", "--no-images", "--format", "json") == 0
    assert files(tmp_path / "o1") == ["a.json", "d/b.json"]
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("a.png\n"))
    assert explain(tiny, "--from-list", "-", "--out", "o2", "--no-images", "--format", "json") == 0
    assert files(tmp_path / "o2") == ["a.json"]


def test_outputs_are_team_readable(tiny: str, tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    old = os.umask(0o022)
    try:
        assert explain(tiny, str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--format", "json") == 0
    finally:
        os.umask(old)
    assert {(p.stat().st_mode & 0o777) for p in (tmp_path / "o").iterdir()} == {0o644}


def test_a_write_error_fails_its_image_only_and_leaves_no_part(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        photo(tmp_path / "in" / f"{name}.png")
    real = writers.write_maps

    def flaky(result, i, out_dir, stem):  # the last file of image b fails after its pictures were written
        if stem == "b":
            raise OSError(errno.ENAMETOOLONG, "File name too long")
        return real(result, i, out_dir, stem)

    monkeypatch.setattr(writers, "write_maps", flaky)
    out = tmp_path / "out"
    assert explain(tiny, str(tmp_path / "in"), "--out", str(out), "--save-maps") == 1
    err = capsys.readouterr().err
    assert "b.png to" in err and "File name too long" in err and "1 of 3 image(s) failed" in err
    assert files(out) == [f"{n}{s}" for n in ("a", "c") for s in (".npz", "_grid.png", "_overlay.png")]
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_a_full_disk_stops_the_run_cleanly(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        photo(tmp_path / "in" / f"{name}.png")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers, "write_pictures", full)
    assert explain(tiny, str(tmp_path / "in"), "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"camloc: error: cannot write the outputs of {tmp_path / 'in' / 'a.png'} to {tmp_path / 'out'}: No space left on device; stopped after 0 image(s)"
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_batch_and_resume_finishes(tiny: str, tmp_path: Path, sig: signal.Signals) -> None:
    for i in range(60):
        photo(tmp_path / "in" / f"p{i:02d}.png", seed=i, size=(320, 240))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "camloc",
        "explain",
        str(tmp_path / "in"),
        "--model",
        tiny,
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--format",
        "json",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    while not list(out.glob("p*.json")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    names = {p.name.split("_")[0].removesuffix(".json") for p in out.iterdir() if not p.name.startswith(".")}
    assert 0 < len(names) < 60
    for n in names:  # every image has all of its outputs or none
        assert all(runner.is_complete(out / f"{n}{s}") for s in (".json", "_overlay.png", "_grid.png"))
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (
        f"wrote results for {60 - len(names)} image(s)" in done.stderr
        and f"({len(names)} already complete" in done.stderr
    )
    assert len(files(out)) == 180


def test_two_torchrun_processes_give_the_one_process_result(tiny: str, tmp_path: Path) -> None:
    for i in range(7):
        photo(tmp_path / "in" / f"p{i}.png", seed=i, size=(40 + 8 * i, 48))
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    common = [
        "explain",
        str(tmp_path / "in"),
        "--model",
        tiny,
        "--no-images",
        "--format",
        "jsonl",
        "--quiet",
        "--batch-size",
        "2",
    ]
    one = subprocess.run(
        [sys.executable, "-m", "camloc", *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "camloc",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert one.returncode == 1 and two.returncode == 0, two.stderr  # torchrun: failures are in the summary
    assert "Traceback" not in two.stderr and "7 image(s)" in two.stderr and "1 failed" in two.stderr
    merged = (tmp_path / "two" / "explain.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in merged] == [json.loads(line) for line in one.stdout.splitlines()]
    assert len(merged) == 7
    summary = json.loads((tmp_path / "two" / "explain-summary.json").read_text())
    assert (summary["world"], summary["done"], summary["failed"]) == (2, 7, 1)
    assert [r["done"] + r["failed"] for r in summary["ranks"]] == [4, 4]
    assert not [p for p in (tmp_path / "two").iterdir() if ".tmp" in p.name]


def test_large_photos_are_decoded_reduced_and_boxes_scaled_back(tiny: str, tmp_path: Path) -> None:
    from PIL import Image

    import camloc
    from camloc.io import load_image

    big = photo(tmp_path / "in" / "big.jpg", size=(4800, 3600))
    reduced = load_image(big, max_side=runner.MAX_EXPLAIN_SIDE)
    assert runner.MAX_EXPLAIN_SIDE == 2048 and reduced.size == (2048, 1536)
    assert reduced.info["camloc_full_size"] == (4800, 3600)
    out = tmp_path / "out"
    assert explain(tiny, str(big), "--out", str(out), "--format", "json", "--top-k", "2") == 0
    rec = json.loads((out / "big.json").read_text())
    assert (rec["width"], rec["height"]) == (4800, 3600) and rec["explained_size"] == list(reduced.size)
    assert Image.open(out / "big_overlay.png").size == reduced.size
    res = camloc.explain(camloc.load(tiny), [reduced], top_k=2, map_sizes=())
    s = 4800 / reduced.size[0]
    for pred, box in zip(rec["predictions"], res.boxes[0].tolist(), strict=True):
        x0, y0, x1, y1 = box
        assert pred["box"] == [
            int(x0 * s),
            int(y0 * s),
            min(4800, -(-x1 * 4800 // reduced.size[0])),
            min(3600, -(-y1 * 3600 // reduced.size[1])),
        ]


@contextlib.contextmanager
def mounted_folder(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `path` with `options` (root with mount rights, as in CI's container); skips otherwise."""
    path.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root with mount rights to make a read-only or full file system")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def run_cli(tiny: str, inputs: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "camloc", "explain", str(inputs), "--model", tiny, "--out", str(out)]
    return subprocess.run(
        [*cmd, "--quiet", "--map-sizes", "native"], capture_output=True, text=True, env=ENV, timeout=300
    )


def test_a_read_only_out_is_one_line_and_writes_nothing(tiny: str, tmp_path: Path) -> None:
    photo(tmp_path / "in" / "a.png")
    with mounted_folder(tmp_path / "ro", "ro,size=1m") as out:
        proc = run_cli(tiny, tmp_path / "in", out)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("camloc: error:") and str(out) in lines[0] and "Read-only" in lines[0], lines[0]
        assert list(out.iterdir()) == []


def test_a_really_full_disk_keeps_whole_outputs_only(tiny: str, tmp_path: Path) -> None:
    for i in range(40):
        photo(tmp_path / "in" / f"p{i:02d}.png", seed=i, size=(320, 240))
    with mounted_folder(tmp_path / "small", "size=4m") as out:
        proc = run_cli(tiny, tmp_path / "in", out)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        assert "No space left on device" in lines[0] and "stopped after" in lines[0], lines[0]
        written = [p for p in out.iterdir() if not p.name.startswith(".")]
        assert not [p for p in out.rglob("*") if ".tmp" in p.name]
        stems = {p.name.split("_")[0].split(".")[0] for p in written}
        for stem in stems:  # every image written has all its outputs, and they decode
            assert {f"{stem}_overlay.png", f"{stem}_grid.png"} <= {p.name for p in written}, sorted(stems)
        assert 0 < len(stems) < 40
