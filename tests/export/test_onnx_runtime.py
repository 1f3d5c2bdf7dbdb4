"""`camloc.onnx_runtime`: no torch, and the same classes, boxes, JSON and pictures as `camloc explain`, with its
default zoom and with the zoom off."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.boxes import BoxRule
from camloc.engine import upsample
from camloc.explainer import writers
from camloc.explainer.passes import zoom_plan
from camloc.io import load_image
from camloc.onnx_runtime import OnnxCam
from camloc.zoom import DEFAULT_ZOOM, Zoom, share_windows

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.jpg"))
SRC = str(Path(camloc.__file__).resolve().parents[1])


def assert_same_records(ref, got, cam: OnnxCam, names: list[str], map_tol: float = 1e-4) -> None:
    """Runtime results equal camloc.explain's: settings, classes, labels and boxes exactly (the same threshold code
    and window geometry run on maps that agree to ~1e-6, so no pixel changes side), scores 1e-5, logits and maps
    to `map_tol`."""
    for i, name in enumerate(names):
        want, have = writers.record(ref, i, name), cam.record(got[i], name)
        assert json.dumps(have)  # plain JSON types
        assert have.keys() == want.keys() and have["settings"] == want["settings"]
        assert {k: have[k] for k in ("image", "width", "height", "model")} == {
            k: want[k] for k in ("image", "width", "height", "model")
        }
        for a, b in zip(have["predictions"], want["predictions"], strict=True):
            assert a.keys() == b.keys()
            assert (a["rank"], a["class_index"], a["label"], a["box"]) == (
                b["rank"],
                b["class_index"],
                b["label"],
                b["box"],
            )
            assert abs(a["score"] - b["score"]) <= 1e-5 and abs(a["logit"] - b["logit"]) <= 1e-4
        assert np.abs(got[i].raw - writers.raw_of(ref, i)).max() <= 1e-4
        assert np.abs(got[i].maps - writers.maps_of(ref, i)).max() <= map_tol


def zoom_counts(ref, zoom: Zoom) -> tuple[int, int]:
    """(windows, classes zoomed) over the images of `ref`, planned from its pass-1 maps as camloc.explain plans
    them: a zoom test that zooms nothing would test the map-size code only."""
    windows = classes = 0
    for i, (height, width) in enumerate(ref.sizes):
        coarse = upsample(torch.from_numpy(writers.raw_of(ref, i)).float(), (height, width))
        if ref.settings["relu"]:
            coarse = coarse.clamp(min=0)
        plan = share_windows(zoom_plan(coarse, zoom.expand, zoom.max_area, BoxRule(ref.settings["threshold"])))
        windows += len(plan)
        classes += sum(len(members) for _, members in plan)
    return windows, classes


@pytest.mark.parametrize(
    ("map_sizes", "zoom"),
    [(None, None), (None, False), ((), None), ((448, 640), None)],
    ids=["zoom", "off", "native", "448+640"],
)
def test_same_records_as_explain_on_the_examples(default_model, default_graph, map_sizes, zoom) -> None:
    """Classes, boxes (all five per image) and settings equal; scores and logits to float round-off. The default
    is explain's default, the zoom; zoom=False (--zoom off) the 640 map pass."""
    assert len(EXAMPLES) == 4
    images = [load_image(p) for p in EXAMPLES]
    ref = camloc.explain(default_model, images, top_k=5, map_sizes=map_sizes, zoom=zoom)
    cam = OnnxCam(default_graph[0], threads=1)
    got = cam.explain(images, top_k=5, map_sizes=map_sizes, zoom=zoom)
    assert got[0].settings["procedure"] == ("zoom" if (map_sizes, zoom) == (None, None) else ref.settings["procedure"])
    assert_same_records(ref, got, cam, [str(p) for p in EXAMPLES])
    if got[0].settings["procedure"] == "zoom":  # zoomed classes, and a window that two classes share
        windows, classes = zoom_counts(ref, DEFAULT_ZOOM)
        assert classes >= 3 and 1 <= windows < classes


@pytest.mark.parametrize("relu", [False, True])
def test_zoom_on_random_weights(small_model, small_graph, picture, relu) -> None:
    """Random weights (maps without a clear object): max_area 1 zooms on every class that has a box, so every
    window, shared or not, is compared; the default settings, "largest" components and targets too."""
    images = [load_image(picture), *(load_image(p) for p in EXAMPLES[:2])]
    names = [picture, *map(str, EXAMPLES[:2])]
    cam = OnnxCam(small_graph, threads=1)
    everywhere = Zoom(1.0, 1.0, 96, "largest")
    for zoom, targets in [(everywhere, None), (True, None), (Zoom(1.5, 1.0, 64, "all"), [[4, 1], [0, 9], [7, 7]])]:
        top_k = 3 if targets is None else None
        ref = camloc.explain(small_model, images, top_k=top_k or 5, targets=targets, zoom=zoom, relu=relu)
        got = cam.explain(images, top_k=top_k, targets=targets, zoom=zoom, relu=relu)
        assert_same_records(ref, got, cam, names)
        if zoom is everywhere:
            assert zoom_counts(ref, everywhere)[1] >= len(images)


def test_explicit_classes_and_box_rule(default_model, default_graph) -> None:
    image = load_image(EXAMPLES[0])
    rule = BoxRule(0.5, "minmax")
    ref = camloc.explain(default_model, [image], targets=[[1, 281]], map_sizes=(), box_rule=rule, scores="sigmoid")
    cam = OnnxCam(default_graph[0], threads=1)
    got = cam.explain([image], targets=[[1, 281]], map_sizes=(), box_rule=rule, scores="sigmoid")[0]
    assert got.classes.tolist() == [1, 281]
    assert np.abs(got.scores - ref.scores[0].numpy()).max() <= 1e-6
    assert cam.record(got, "x")["settings"] == writers.record(ref, 0, "x")["settings"]
    assert got.boxes.tolist() == ref.boxes[0].tolist()
    assert got.settings["threshold_mode"] == "minmax"


def test_top_k_above_the_graph_is_refused(default_graph) -> None:
    from camloc.errors import InputError

    with pytest.raises(InputError, match="top-k 5"):
        OnnxCam(default_graph[0]).explain([EXAMPLES[0]], top_k=6)


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    """Python with `import torch` failing (as on a server without PyTorch)."""
    prelude = f"import sys; sys.modules['torch'] = None; sys.path.insert(0, {SRC!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, check=False
    )


def test_imports_and_runs_without_torch(small_graph, picture, tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    run = run_without_torch(
        f"""
        import camloc.onnx_runtime as rt
        assert 'torch' not in sys.modules or sys.modules['torch'] is None
        rc = rt.main([{str(small_graph)!r}, {picture!r}, {str(bad)!r}, '--out', {str(out)!r}, '--format', 'json',
                      '--map-sizes', '96'])
        sys.exit(rc)
        """
    )
    assert run.returncode == 1, run.stderr  # one image of two failed, the other was written
    assert "broken.jpg" in run.stderr and "Traceback" not in run.stderr
    (written,) = out.rglob("disc.json")  # named as camloc explain names it (folders below the inputs' common one)
    record = json.loads(written.read_text())
    assert record["width"] == 120 and record["height"] == 90 and len(record["predictions"]) == 3
    assert record["settings"]["map_sizes"] == [96]
    overlay = np.asarray(Image.open(written.with_name("disc_overlay.png")))
    assert overlay.shape == (90, 120, 3)
    assert written.with_name("disc_grid.png").is_file() and not list(out.rglob("broken.json"))


def test_cli_zoom_without_torch(small_model, small_graph, picture, tmp_path) -> None:
    """--zoom as camloc explain spells it: the default zooms (and runs without torch), 'off' gives the 640 map pass,
    a setting gives that zoom; each record equals camloc.explain's boxes and settings; --zoom with --map-sizes is a
    one-line error."""
    runs = {"default": [], "off": ["--zoom", "off"], "set": ["--zoom", "1.0,1.0,96,largest"]}
    for name, extra in runs.items():
        run = run_without_torch(
            f"""
            import camloc.onnx_runtime as rt
            sys.exit(rt.main([{str(small_graph)!r}, {picture!r}, '--out', {str(tmp_path / name)!r}, '--format', 'json',
                              '--no-images', *{extra!r}]))
            """
        )
        assert run.returncode == 0, run.stderr
    from camloc.zoom import parse_zoom

    for name, extra in runs.items():
        (written,) = (tmp_path / name).rglob("disc.json")
        have = json.loads(written.read_text())
        ref = camloc.explain(small_model, [picture], top_k=3, zoom=parse_zoom(extra[1] if extra else None))
        want = writers.record(ref, 0, picture)
        assert have["settings"] == want["settings"]
        assert [a["box"] for a in have["predictions"]] == [b["box"] for b in want["predictions"]]
    assert json.loads(next((tmp_path / "default").rglob("disc.json")).read_text())["settings"]["procedure"] == "zoom"
    run = run_without_torch(
        f"""
        import camloc.onnx_runtime as rt
        sys.exit(rt.main([{str(small_graph)!r}, {picture!r}, '--out', {str(tmp_path)!r}, '--zoom', 'on',
                          '--map-sizes', '96']))
        """
    )
    assert run.returncode == 2 and run.stderr.strip() == (
        "camloc-onnx: error: give either a zoom or map sizes, not both (map sizes turn the zoom off)"
    )


def test_runtime_cli_errors_are_one_line(tmp_path, picture) -> None:
    not_a_graph = tmp_path / "x.onnx"
    not_a_graph.write_bytes(b"garbage")
    run = run_without_torch(
        f"""
        import camloc.onnx_runtime as rt
        sys.exit(rt.main([{str(not_a_graph)!r}, {picture!r}, '--out', {str(tmp_path)!r}]))
        """
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"camloc-onnx: error: {not_a_graph}: not an ONNX model")


def test_same_pictures_as_explain(default_model, default_graph, tmp_path) -> None:
    """The overlay PNG of the runtime is the one `camloc explain` writes, up to a few colormap levels."""
    image = load_image(EXAMPLES[0])  # the astronaut: one class zoomed
    ref = camloc.explain(default_model, [image], top_k=5)
    writers.write_pictures(ref, 0, image, tmp_path, "torch")
    cam = OnnxCam(default_graph[0], threads=1)
    got = cam.explain([image])[0]
    titles = writers.picture_titles(got.labels, got.scores.tolist())
    writers.write_picture_arrays(np.asarray(image), got.maps, got.boxes, titles, tmp_path, "onnx")
    a = np.asarray(Image.open(tmp_path / "torch_overlay.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "onnx_overlay.png")).astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 2 and (a != b).mean() < 0.01


def test_fixed_size_graph_squashes_the_image(small_model, picture, tmp_path) -> None:
    """A graph exported with --input-size runs one pass on the image resized to exactly that size."""
    import torch

    from camloc.export import export_onnx
    from camloc.models.adapters import get_adapter
    from camloc.preprocess import Preprocess, image_to_array

    path = export_onnx(small_model, tmp_path / "fixed.onnx", top_k=2, input_size=(64, 72)).path
    cam = OnnxCam(path, threads=1)
    image = load_image(picture)
    result = cam.explain([image], map_sizes=None)[0]
    assert result.settings["map_sizes"] == [] and result.maps.shape == (2, 90, 120)
    assert result.settings["fixed_input_size"] == [64, 72] and result.settings["native_size"] == 64
    x = torch.from_numpy(image_to_array(image, 0, Preprocess(), size=(64, 72)))[None]
    adapter = get_adapter(small_model)
    with torch.no_grad():
        feats, logits = adapter.forward(x)
        ref = torch.einsum("bchw,kc->bkhw", feats, adapter.weight[torch.from_numpy(result.classes)])[0].numpy()
    assert result.classes.tolist() == logits.topk(2).indices[0].tolist()
    assert result.raw.shape == (2, 8, 9) and np.abs(result.raw - ref).max() <= 1e-4
    from camloc.errors import InputError

    with pytest.raises(InputError, match="fixed input size"):
        cam.explain([image], map_sizes=(96,))
    assert result.settings["procedure"] == "classification pass"  # the default zoom falls back, as in explain
    with pytest.raises(InputError, match="so the zoom cannot run"):
        cam.explain([image], zoom=True)


def test_graph_without_classes_input(small_graph, picture, tmp_path) -> None:
    """A graph whose `classes` input was removed (its default kept as a constant) still runs the classification
    pass; what needs the first pass's classes at another input (here a zoom on every class) is one clear error."""
    import onnx

    from camloc.errors import InputError

    proto = onnx.load(str(small_graph))
    kept = [i for i in proto.graph.input if i.name != "classes"]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    path = tmp_path / "no_classes.onnx"
    onnx.save(proto, str(path))
    cam, full = OnnxCam(path, threads=1), OnnxCam(small_graph, threads=1)
    assert not cam.takes_classes and full.takes_classes
    image = load_image(picture)
    native, ref = cam.explain([image], map_sizes=())[0], full.explain([image], map_sizes=())[0]
    assert native.boxes.tolist() == ref.boxes.tolist() and np.array_equal(native.maps, ref.maps)
    with pytest.raises(InputError, match="has no 'classes' input, so it cannot map"):
        cam.explain([image], zoom=Zoom(1.0, 1.0, 96))


def test_images_batched_at_224_but_not_at_640(small_graph) -> None:
    """900x1200 and 900x1201 share their 224 input (224x299) but not their 640 one (853 vs 854 wide)."""
    images = [Image.new("RGB", (1200, 900), (200, 10, 10)), Image.new("RGB", (1201, 900), (10, 200, 10))]
    images[1].paste((250, 250, 0), (300, 200, 700, 600))
    cam = OnnxCam(small_graph, threads=1)
    together = cam.explain(images, map_sizes=(640,))
    for image, res in zip(images, together, strict=True):
        alone = cam.explain([image], map_sizes=(640,))[0]
        assert res.maps.shape == (3, 900, image.width)
        assert res.boxes.tolist() == alone.boxes.tolist() and np.abs(res.maps - alone.maps).max() <= 1e-5
