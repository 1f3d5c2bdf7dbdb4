"""Images of any sizes run in batches in every pass (one batch per input shape), through the API and the CLI, and
give what each image gives alone. The batches are counted at the model's first convolution."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import camloc
from camloc.cli import main
from camloc.models.zoo import info_of
from camloc.preprocess import scaled_size

REPO = Path(__file__).resolve().parents[2]
SIZES = st.lists(st.tuples(st.integers(24, 160), st.integers(24, 160)), min_size=1, max_size=5)
# native size of the test net is 160: () and (160,) are the classification pass alone
MAP_SIZES = st.sampled_from([(), (160,), (96,), (224,), (96, 224), (160, 256)])


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    """timm's tiny test net (random weights, native size 160), one thread: the machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = camloc.load("test_efficientnet")
    camloc.explain(model, torch.zeros(1, 3, 64, 64))  # finds and verifies the head once (a forward of its own)
    yield model
    torch.set_num_threads(before)


def random_images(sizes: list[tuple[int, int]], seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def expected_batches(sizes: list[tuple[int, int]], native: int, map_sizes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """(batch, 3, h, w) of every forward pass: per pass (native first, then each other map size), one batch per
    distinct input shape, in order of first appearance."""
    out: list[tuple[int, ...]] = []
    for s in [native] + [s for s in map_sizes if s != native]:
        counts = Counter(scaled_size(h, w, s) for h, w in sizes)  # insertion-ordered
        out += [(c, 3, *shape) for shape, c in counts.items()]
    return out


@contextlib.contextmanager
def forward_log(model: torch.nn.Module) -> Iterator[list[tuple[int, ...]]]:
    """Input shapes seen by the model's first convolution, one entry per forward pass."""
    shapes: list[tuple[int, ...]] = []
    handle = model.conv_stem.register_forward_hook(lambda _m, inp, _o: shapes.append(tuple(inp[0].shape)))
    try:
        yield shapes
    finally:
        handle.remove()


def assert_same_as_alone(res: camloc.Result, i: int, alone: camloc.Result) -> None:
    """Image i of a batch against the same image explained alone: same classes and boxes (up to a pixel: float
    round-off of batched convolutions can move a threshold crossing), maps equal up to round-off."""
    assert torch.equal(res.classes[i], alone.classes[0])
    torch.testing.assert_close(res.all_logits[i], alone.all_logits[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(res.raw[i], alone.raw[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(res.maps[i], alone.maps[0], atol=1e-3, rtol=0)
    assert int((res.boxes[i] - alone.boxes[0]).abs().max()) <= 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=SIZES, map_sizes=MAP_SIZES)
def test_api_batches_any_sizes(tiny: torch.nn.Module, sizes: list[tuple[int, int]], map_sizes: tuple) -> None:
    images = random_images(sizes, seed=len(sizes))
    with forward_log(tiny) as shapes:
        res = camloc.explain(tiny, images, top_k=3, map_sizes=map_sizes)
    assert shapes == expected_batches(sizes, info_of(tiny).preprocess.input_size, map_sizes)
    assert res.sizes == [(h, w) for h, w in sizes] and res.boxes.shape == (len(sizes), 3, 4)
    for i, (h, w) in enumerate(sizes):
        assert res.maps[i].shape == (3, h, w)
        assert_same_as_alone(res, i, camloc.explain(tiny, [images[i]], top_k=3, map_sizes=map_sizes))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=SIZES, map_sizes=MAP_SIZES, batch_size=st.integers(1, 4))
def test_cli_batches_any_sizes(
    tiny: torch.nn.Module,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    sizes: list[tuple[int, int]],
    map_sizes: tuple,
    batch_size: int,
) -> None:
    monkeypatch.setattr("camloc.cli.explain.load", lambda _name: tiny)
    images = random_images(sizes, seed=7)
    native = info_of(tiny).preprocess.input_size
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"img{i:02d}.png" for i in range(len(images))]
        for im, p in zip(images, paths, strict=True):
            im.save(p)
        args = ["explain", tmp, "--top-k", "3", "--format", "jsonl", "--no-images", "--quiet"]
        args += ["--batch-size", str(batch_size), "--map-sizes", ",".join(map(str, map_sizes)) or "native"]
        capsys.readouterr()
        with forward_log(tiny) as shapes:
            rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""  # nothing skipped, nothing retried one at a time
    expected = []
    for start in range(0, len(sizes), batch_size):
        expected += expected_batches(sizes[start : start + batch_size], native, map_sizes)
    assert shapes == expected
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["image"]).name for r in records] == [p.name for p in paths]
    for rec, im in zip(records, images, strict=True):
        alone = camloc.explain(tiny, [im], top_k=3, map_sizes=map_sizes)
        assert (rec["width"], rec["height"]) == im.size
        assert [p["class_index"] for p in rec["predictions"]] == alone.classes[0].tolist()
        boxes = torch.tensor([p["box"] for p in rec["predictions"]])
        assert int((boxes - alone.boxes[0]).abs().max()) <= 1


def test_photos_of_two_shapes_at_the_map_size(default_model: torch.nn.Module) -> None:
    """The reported crash: cat.jpg (384x255) and chelsea (451x300) share one shape at 224 but not at 640
    ("stack expects each tensor to be equal size" from the 640 pass)."""
    skimage_data = pytest.importorskip("skimage.data")
    images = [Image.open(REPO / "examples" / "cat.jpg").convert("RGB"), Image.fromarray(skimage_data.chelsea())]
    assert scaled_size(255, 384, 224) == scaled_size(300, 451, 224)
    assert scaled_size(255, 384, 640) != scaled_size(300, 451, 640)
    res = camloc.explain(default_model, images, top_k=2, map_sizes=(640,))
    assert res.sizes == [(255, 384), (300, 451)]
    for i, im in enumerate(images):
        assert_same_as_alone(res, i, camloc.explain(default_model, [im], top_k=2, map_sizes=(640,)))


def test_min_score_with_mixed_sizes_and_class_counts(tiny: torch.nn.Module) -> None:
    """With `min_score` images get different numbers of classes; the passes batch by shape and count, and each
    image gets what it gets alone."""
    images = random_images([(40, 60), (90, 50), (40, 60), (120, 130), (90, 50)], seed=3)
    second_best = camloc.explain(tiny, images, top_k=2, map_sizes=()).scores[:, 1]
    threshold = float(second_best.max())  # that image gets 2 classes, the others 1
    res = camloc.explain(tiny, images, min_score=threshold, map_sizes=(96, 224))
    counts = [len(c) for c in res.classes]
    assert sorted(counts) == [1, 1, 1, 1, 2]
    for i, im in enumerate(images):
        alone = camloc.explain(tiny, [im], min_score=threshold, map_sizes=(96, 224))
        assert res.classes[i].tolist() == alone.classes[0].tolist()
        torch.testing.assert_close(res.maps[i], alone.maps[0], atol=1e-3, rtol=0)
        assert int((res.boxes[i] - alone.boxes[0]).abs().max()) <= 1
