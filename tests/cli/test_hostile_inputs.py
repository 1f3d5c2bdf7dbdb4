"""A corpus of bad, odd and hostile inputs and settings for `camloc explain` / `evaluate` and `camloc.explain`:
each gives no traceback, one clear line naming the file or setting, the exit status it should, and the rest of the
batch goes on (the good picture given beside a bad file is explained). Nothing is left half written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.cli import main
from camloc.errors import InputError
from tests.fixture_tiny import TINY_CONFIG, photo, tiny_checkpoint

Setup = Callable[[Path], list[str]]  # makes the case's files under a folder; returns the extra command-line args


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ck"))


def file_with(name: str, data: bytes) -> Setup:
    def make(d: Path) -> list[str]:
        (d / name).write_bytes(data)
        return [str(d / name)]

    return make


def pil_save(name: str, make_image: Callable[[], Image.Image], **kwargs: object) -> Setup:
    def make(d: Path) -> list[str]:
        make_image().save(d / name, **kwargs)
        return [str(d / name)]

    return make


def rgb(w: int = 40, h: int = 30) -> Image.Image:
    return Image.fromarray((np.random.default_rng(1).random((h, w, 3)) * 255).astype(np.uint8))


def png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    rgb().save(buf, format="PNG")
    return buf.getvalue()


def folder_named(name: str) -> Setup:
    def make(d: Path) -> list[str]:
        (d / name).mkdir()
        return [str(d / name)]

    return make


def symlink_loop(d: Path) -> list[str]:
    (d / "loop").mkdir()
    photo(d / "loop" / "inner.png")
    (d / "loop" / "again").symlink_to(d / "loop")
    return [str(d / "loop")]


def dangling(d: Path) -> list[str]:
    (d / "gone.jpg").symlink_to(d / "nowhere.jpg")
    return [str(d / "gone.jpg")]


def fifo(d: Path) -> list[str]:
    os.mkfifo(d / "pipe.png")
    return [str(d / "pipe.png")]


def animated_gif(d: Path) -> list[str]:
    frames = [rgb().convert("P"), rgb(40, 30).transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P")]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return [str(d / "anim.gif")]


def multipage_tiff(d: Path) -> list[str]:
    rgb().save(d / "pages.tiff", save_all=True, append_images=[rgb(20, 10)])
    return [str(d / "pages.tiff")]


def bomb(d: Path) -> list[str]:
    Image.new("1", (12000, 9000)).save(d / "bomb.png")  # 108 MP in a tiny file
    return [str(d / "bomb.png")]


def from_list(lines: str) -> Setup:
    def make(d: Path) -> list[str]:
        (d / "list.txt").write_text(lines.replace("{d}", str(d)))
        return ["--from-list", str(d / "list.txt")]

    return make


def out_is_file(d: Path) -> list[str]:
    (d / "o").write_text("x")
    return ["--out", str(d / "o")]


def out_under_file(d: Path) -> list[str]:
    (d / "o").write_text("x")
    return ["--out", str(d / "o" / "sub")]


def options(*args: str) -> Setup:
    return lambda d: list(args)


def model_dir(change: Callable[[Path], None]) -> Setup:
    def make(d: Path) -> list[str]:
        ck = tiny_checkpoint(d / "model")
        change(ck)
        return ["--model", str(ck)]

    return make


def damaged_weights(ck: Path) -> None:
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])


def wrong_config(ck: Path) -> None:
    cfg = {**TINY_CONFIG, "arch_kwargs": {"num_classes": 4, "depth": 50}}
    (ck / "config.json").write_text(json.dumps(cfg))


def nan_weights(ck: Path) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(ck / "model.safetensors"))
    first = next(k for k, t in sd.items() if t.is_floating_point())
    sd[first] = torch.full_like(sd[first], float("nan"))
    save_file(sd, str(ck / "model.safetensors"))


def pickle_model(d: Path) -> list[str]:
    torch.save({"w": torch.zeros(2)}, d / "model.pth")
    return ["--model", str(d / "model.pth")]


def bad_json_config(ck: Path) -> None:
    (ck / "config.json").write_text("{not json")


# id, setup, exit status, a piece of the one error line (None: no error line), whether good.png is explained too
CASES: list[tuple[str, Setup, int, str | None, bool]] = [
    # files that cannot be explained: reported by name, the batch goes on
    ("empty-file", file_with("empty.png", b""), 1, "empty.png: empty file", True),
    ("truncated-png", file_with("cut.png", png_bytes()[:60]), 1, "cut.png: corrupt or truncated", True),
    ("text-as-jpg", file_with("notes.jpg", b"hello, not a picture"), 1, "notes.jpg: not an image file", True),
    ("garbage-jpeg", file_with("broken.jpg", b"\xff\xd8\xff garbage"), 1, "broken.jpg", True),
    ("missing-file", lambda d: [str(d / "missing.jpg")], 1, "missing.jpg: no such file", True),
    ("dangling-link", dangling, 1, "gone.jpg: no such file", True),
    ("fifo", fifo, 1, "pipe.png", True),
    (
        "svg",
        file_with("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
        1,
        "drawing.svg: not an image file",
        True,
    ),
    ("pickle-as-image", file_with("weights.png", b"\x80\x04\x95"), 1, "weights.png", True),
    ("decompression-bomb", bomb, 1, "bomb.png: image too large", True),
    ("folder-named-like-image", folder_named("dir.jpg"), 0, None, True),
    # odd but valid files: explained
    ("symlink-loop", symlink_loop, 0, None, True),
    ("spaces-in-name", pil_save("my photo 1.png", rgb), 0, None, True),
    ("unicode-name", pil_save("фото-猫-é.png", rgb), 0, None, True),
    ("long-name", pil_save("x" * 240 + ".png", rgb), 0, None, True),
    ("animated-gif", animated_gif, 0, None, True),
    ("multipage-tiff", multipage_tiff, 0, None, True),
    ("webp", pil_save("pic.webp", rgb, format="WEBP"), 0, None, True),
    (
        "16-bit-png",
        pil_save("deep.png", lambda: Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50)),
        0,
        None,
        True,
    ),
    ("cmyk-jpeg", pil_save("print.jpg", lambda: rgb().convert("CMYK")), 0, None, True),
    ("rgba-png", pil_save("alpha.png", lambda: rgb().convert("RGBA")), 0, None, True),
    ("one-pixel", pil_save("dot.png", lambda: rgb(1, 1)), 0, None, True),
    ("one-by-500", pil_save("thin.png", lambda: rgb(1, 500)), 0, None, True),
    ("500-by-one", pil_save("flat.png", lambda: rgb(500, 1)), 0, None, True),
    ("list-with-comments", from_list("# photos\n\n{d}/good.png\n"), 0, None, True),
    ("list-with-bad-line", from_list("{d}/nothing.png\n{d}/good.png\n"), 1, "nothing.png: no such file", True),
    # settings: one line, nothing run
    (
        "list-missing",
        options("--from-list", "/nonexistent/list.txt"),
        2,
        "--from-list /nonexistent/list.txt: no such file",
        False,
    ),
    ("out-is-file", out_is_file, 2, "the output folder is a file", False),
    ("out-under-file", out_under_file, 2, "cannot write outputs there", False),
    ("batch-size-0", options("--batch-size", "0"), 2, "batch size must be an integer of at least 1, got 0", False),
    ("batch-size-negative", options("--batch-size", "-3"), 2, "got -3", False),
    ("top-k-0", options("--top-k", "0"), 2, "top-k must be an integer of at least 1, got 0", False),
    ("top-k-negative", options("--top-k", "-1"), 2, "got -1", False),
    ("threshold-nan", options("--threshold", "nan"), 2, "finite number", False),
    ("threshold-inf", options("--threshold", "inf"), 2, "finite number", False),
    ("threshold-2", options("--threshold", "2"), 2, "must lie in [0, 1], got 2", False),
    ("threshold-negative", options("--threshold", "-1"), 2, "must lie in [0, 1], got -1", False),
    ("loc-threshold-nan", options("--loc-threshold", "nan"), 2, "finite number", False),
    ("map-size-0", options("--map-sizes", "0"), 2, "--map-sizes", False),
    ("map-size-huge", options("--map-sizes", "100000"), 2, "32..4096", False),
    ("map-size-text", options("--map-sizes", "6,4,x"), 2, "not a comma-separated list", False),
    ("classes-text", options("--classes", "abc"), 2, "--classes: 'abc'", False),
    ("classes-out-of-range", options("--classes", "99"), 2, "99", False),
    ("workers-negative", options("--workers", "-1"), 2, "--workers must be 0 or more", False),
    ("unknown-method", options("--method", "magic"), 2, "magic", False),
    ("unknown-layer", options("--layer", "no.such.layer", "--method", "gradcam"), 2, "no.such.layer", False),
    ("unknown-device", options("--device", "tpu9"), 2, "--device tpu9", False),
    ("resume-without-files", options("--resume", "--no-images", "--format", "none"), 2, "resume needs outputs", False),
    # models
    ("pickle-model", pickle_model, 2, "pickled checkpoints are not loaded", False),
    ("damaged-safetensors", model_dir(damaged_weights), 2, "not a readable safetensors file", False),
    ("wrong-config", model_dir(wrong_config), 2, "arch_kwargs do not fit architecture 'gapnet'", False),
    ("nan-weights", model_dir(nan_weights), 2, "NaN or infinite values", False),
    ("config-not-json", model_dir(bad_json_config), 2, "config.json: not valid JSON", False),
    ("unknown-architecture", options("--model", "no_such_net_v9"), 2, "unknown model 'no_such_net_v9'", False),
]


@pytest.mark.parametrize(("setup", "status", "message", "good_done"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_explain_corpus(
    tiny: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    setup: Setup,
    status: int,
    message: str | None,
    good_done: bool,
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo(inputs / "good.png")
    extra = setup(inputs)
    args = ["explain", "--model", tiny, "--quiet", "--map-sizes", "native", "--format", "json", "--workers", "1"]
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "out")]
    if "--from-list" not in extra:
        args.append(str(inputs / "good.png"))
    rc = main(args + extra)  # an uncaught exception (a traceback) fails the test here
    err = capsys.readouterr().err
    assert rc == status, err
    lines = err.strip().splitlines()
    assert all(line.startswith("camloc: ") for line in lines), err
    if message is not None:
        assert sum(message in line for line in lines) == 1, err
    out = tmp_path / "out"
    if good_done:
        (good,) = out.rglob("good.json")  # a listed path is named relative to the current folder
        assert json.loads(good.read_text())["predictions"]
    if out.is_dir():  # nothing half written
        assert not [p for p in out.rglob("*") if ".tmp" in p.name]
        stems = {p.name.removesuffix("_overlay.png") for p in out.rglob("*_overlay.png")}
        assert stems == {p.name.removesuffix(".json") for p in out.rglob("*.json") if not p.name.startswith(".")}


def voc_folder(d: Path, name: str = "cat") -> Path:
    (d / "Annotations").mkdir(parents=True)
    photo(d / "JPEGImages" / "a.jpg", size=(64, 48))
    (d / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height></size><object>"
        f"<name>{name}</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object>"
        "</annotation>"
    )
    return d


EVALUATE_CASES = [
    ("batch-size-negative", ["--batch-size", "-1"], 2, "batch size must be an integer of at least 1, got -1"),
    ("split-missing", ["--split", "no_such_split"], 2, "no split 'no_such_split'"),
    ("report-under-file", ["--report", "{d}/file.txt/report.json"], 2, "cannot write there"),
    (
        "own-class-names-without-file",
        [],
        2,
        "unknown class 'widget'; give the dataset's class names with --class-names",
    ),
    ("class-names-missing", ["--class-names", "{d}/none.txt"], 2, "--class-names"),
    ("no-class-map-warns", ["--class-names", "{d}/classes.txt"], 0, "without --class-map"),
]


@pytest.mark.parametrize(
    ("extra", "status", "message"), [c[1:] for c in EVALUATE_CASES], ids=[c[0] for c in EVALUATE_CASES]
)
def test_evaluate_corpus(
    tiny: str, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], status: int, message: str
) -> None:
    voc = voc_folder(tmp_path / "voc", name="widget")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "classes.txt").write_text("widget\ngadget\n")
    args = ["evaluate", "--data", f"voc:{voc}", "--model", tiny, "--quiet", "--map-sizes", "native"]
    if "--class-names" not in extra and status == 2 and "unknown class" not in message:
        args += ["--class-names", str(tmp_path / "classes.txt")]
    rc = main(args + [a.replace("{d}", str(tmp_path)) for a in extra])
    err = capsys.readouterr().err
    assert rc == status, err
    assert sum(message in line for line in err.splitlines()) == 1, err


def test_coco_results_hold_no_unknown_category() -> None:
    from camloc.data.base import Dataset
    from camloc.localize.evaluation import coco_results

    ds = Dataset(name="d", samples=[], class_names=["a", "b"])
    ds.model_index = np.array([3, 7])
    results = [
        {"image_id": "1", "label": 0, "guesses": [(3, [0, 0, 4, 4])], "gt_known_box": [0, 0, 4, 4]},
        {"image_id": "2", "label": 1, "guesses": [(500, [0, 0, 4, 4])], "gt_known_box": [0, 0, 4, 4]},
    ]
    assert [r["category_id"] for r in coco_results(results, ds)] == [0]


API_CASES = [
    ("top-k-0", {"top_k": 0}, "top-k must be an integer of at least 1"),
    ("top-k-float", {"top_k": 2.5}, "top-k must be an integer"),
    ("map-sizes-string", {"map_sizes": "640"}, "a sequence of integers such as (224, 448), got '640'"),
    ("map-sizes-huge", {"map_sizes": [100000]}, "32..4096"),
    ("map-sizes-tiny", {"map_sizes": [4]}, "32..4096"),
    ("targets-empty-lists", {"targets": [[], []], "inputs": "two"}, "at least one target class"),
    ("targets-count", {"targets": [[1]], "inputs": "two"}, "1 target lists for 2 images"),
    ("uint8-tensor", {"inputs": torch.zeros(1, 3, 64, 64, dtype=torch.uint8)}, "float tensor, got torch.uint8"),
    ("nan-tensor", {"inputs": torch.full((1, 3, 64, 64), float("nan"))}, "NaN"),
    ("empty-batch", {"inputs": torch.zeros(0, 3, 64, 64)}, "empty batch"),
    ("grayscale-tensor", {"inputs": torch.zeros(1, 1, 64, 64)}, "(B, 3, H, W)"),
    ("empty-list", {"inputs": []}, "no images given"),
]


@pytest.mark.parametrize(("kwargs", "message"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_corpus(tiny: str, kwargs: dict, message: str) -> None:
    model = camloc.load(tiny)
    kwargs = dict(kwargs)
    inputs = kwargs.pop("inputs", [rgb()])
    if isinstance(inputs, str):
        inputs = [rgb(), rgb(30, 40)]
    with pytest.raises(InputError) as info:
        camloc.explain(model, inputs, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_api_float_tensors_of_any_precision(tiny: str, dtype: torch.dtype) -> None:
    model = camloc.load(tiny)
    x = torch.randn(2, 3, 64, 64)
    ref = camloc.explain(model, x, top_k=2, map_sizes=())
    res = camloc.explain(model, x.to(dtype), top_k=2, map_sizes=())
    tol = 1e-5 if dtype == torch.float64 else 5e-2
    assert torch.allclose(res.all_logits.float(), ref.all_logits, atol=tol)
