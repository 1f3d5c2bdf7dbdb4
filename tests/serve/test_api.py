"""`camloc serve`'s API through FastAPI's TestClient: every route, the records against `camloc.explain`, the maps'
encoding, batching, and every error (413, 415, 400, 503 + Retry-After, 504) as JSON naming the file."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self, cast

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc import viz
from camloc.boxes import BoxRule
from camloc.explainer import writers
from camloc.explainer.runner import ExplainOptions

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from fastapi import FastAPI
from fastapi.testclient import TestClient

from camloc.serve import ServeConfig, create_app
from camloc.serve.app import safe_name
from camloc.serve.worker import Job, Options, Worker


def png_bytes(size: tuple[int, int] = (96, 72), seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def upload(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


@pytest.fixture
def client(tiny_model: torch.nn.Module, one_thread) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_model)) as c:
        yield c


def make_client(model: torch.nn.Module, **cfg) -> TestClient:
    return TestClient(create_app(model, ServeConfig(**cfg)))


def worker_of(c: TestClient) -> Worker:
    """The app's inference worker (TestClient types its app as a bare ASGI callable)."""
    return cast(FastAPI, c.app).state.worker


def decode_map(b64: str) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
    return (rgb[..., 0].astype(np.int64) << 8) | rgb[..., 1]


# --------------------------------------------------------------------------------------------- info routes


def test_info_routes(client: TestClient, tiny_model: torch.nn.Module) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["models"] == ["tiny-gapnet"] and health["queue"]["pending"] == 0
    models = client.get("/api/models").json()
    assert models["models"] == [
        {"name": "tiny-gapnet", "default": True, "num_classes": 1000, "input_size": 64, "device": "cpu"}
    ]
    assert {"cam", "gradcam", "scorecam"} <= set(models["methods"])
    assert models["defaults"]["threshold"] == 0.2 and models["defaults"]["threshold_mode"] == "max"
    labels = client.get("/api/labels").json()
    assert labels["labels"] == tiny_model.camloc_info.labels and len(labels["labels"]) == 1000
    assert client.get("/api/labels", params={"model": "nope"}).status_code == 404
    lut = np.array(client.get("/api/colormap").json()["lut"])
    assert lut.shape == (256, 3)
    assert np.array_equal(lut[[0, 128, 255]], viz.colorize(np.array([[0.0, 128 / 255, 1.0]]))[0])
    assert client.get("/api/colormap", params={"name": "rainbow"}).status_code == 404


def test_page_and_static_files_are_local(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: the page works offline
    assert client.get("/static/../app.py").status_code == 404


# ------------------------------------------------------------------------------------------------ explain


def test_explain_is_the_library_record_plus_maps(client: TestClient, tiny_model: torch.nn.Module) -> None:
    data = png_bytes()
    r = client.post("/api/explain", files=upload(("disc.png", data)), data={"top_k": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errors"] == [] and len(body["results"]) == 1
    rec = body["results"][0]
    ref = camloc.explain(tiny_model, [Image.open(io.BytesIO(data))], top_k=3)
    expected = writers.record(ref, 0, "disc.png")
    assert {k: v for k, v in rec.items() if k not in ("predictions", "index")} == {
        k: v for k, v in expected.items() if k != "predictions"
    }
    assert rec["index"] == 0
    for got, want, maps, rng in zip(
        rec["predictions"], expected["predictions"], ref.maps[0], ref.map_range[0], strict=True
    ):
        for key in ("rank", "class_index", "label", "box"):
            assert got[key] == want[key]
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)
        # the map: 16-bit levels of the normalised map, and its range before normalisation
        q = decode_map(got["map"])
        assert q.shape == (72, 96)
        assert np.abs(q / 65535.0 - maps.numpy()).max() <= 0.5 / 65535 + 1e-7
        assert got["map_range"] == pytest.approx(rng.tolist(), rel=1e-6)


def test_options_reach_explain(client: TestClient, tiny_model: torch.nn.Module) -> None:
    data = png_bytes(seed=1)
    image = Image.open(io.BytesIO(data))
    form = {"classes": "281,285", "method": "gradcam", "map_sizes": "native", "threshold": "0.5"}
    form |= {"threshold_mode": "minmax", "relu": "true", "maps": "false"}
    rec = client.post("/api/explain", files=upload(("a.png", data)), data=form).json()["results"][0]
    ref = camloc.explain(
        tiny_model,
        [image],
        targets=[[281, 285]],
        method="gradcam",
        map_sizes=(),
        box_rule=BoxRule(0.5, "minmax"),
        relu=True,
    )
    assert rec["settings"] == ref.settings
    assert [p["class_index"] for p in rec["predictions"]] == [281, 285]
    assert [p["box"] for p in rec["predictions"]] == ref.boxes[0].tolist()
    assert all("map" not in p for p in rec["predictions"])


def test_several_files_and_one_bad(client: TestClient) -> None:
    files = upload(("a.png", png_bytes(seed=2)), ("notes.txt", b"hello"), ("b.png", png_bytes((50, 80), seed=3)))
    r = client.post("/api/explain", files=files, data={"top_k": "2"})
    assert r.status_code == 200
    body = r.json()
    assert [(x["image"], x["index"], x["width"], x["height"]) for x in body["results"]] == [
        ("a.png", 0, 96, 72),
        ("b.png", 2, 50, 80),
    ]
    assert body["errors"] == [
        {
            "file": "notes.txt",
            "error": "notes.txt: not an image file (or a format Pillow cannot read)",
            "status": 415,
            "index": 1,
        }
    ]


def test_upload_names_are_labels_not_paths(client: TestClient, tmp_path: Path) -> None:
    before = sorted(Path.cwd().iterdir())
    for name in ("../../etc/evil.png", "..\\..\\evil.png", "/tmp/evil.png"):
        rec = client.post("/api/explain", files=upload((name, png_bytes()))).json()["results"][0]
        assert rec["image"] == "evil.png"
    assert sorted(Path.cwd().iterdir()) == before
    assert safe_name("a\x00b\x1f\x7f.png", 0) == "ab.png" and safe_name("x" * 300, 0) == "x" * 200
    assert safe_name("..", 4) == ".." and safe_name("dir/", 4) == "image-5"


# ------------------------------------------------------------------------------------------------- errors


def error_of(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    return body


@pytest.mark.parametrize(
    ("name", "data", "status", "reason"),
    [
        ("notes.jpg", b"just some text", 415, "notes.jpg: not an image file"),
        ("cut.png", png_bytes()[:200], 400, "cut.png: corrupt or truncated image"),
        ("empty.png", b"", 400, "empty.png: empty file"),
    ],
)
def test_bad_files(client: TestClient, name: str, data: bytes, status: int, reason: str) -> None:
    body = error_of(client.post("/api/explain", files=upload((name, data))), status)
    assert body["error"].startswith(reason) and body["file"] == name
    assert body["errors"][0]["status"] == status


def test_pixel_limit_and_decompression_bomb(tiny_model: torch.nn.Module) -> None:
    with make_client(tiny_model, max_pixels=5000) as c:
        body = error_of(c.post("/api/explain", files=upload(("big.png", png_bytes((100, 60))))), 400)
        assert body["error"] == "big.png: image too large to decode safely (100x60 pixels, the limit is 5,000)"
    # a PNG of 14,200 x 14,200 one-bit pixels is a few kB: Pillow's bomb guard refuses it before decoding
    buf = io.BytesIO()
    Image.new("1", (14_200, 14_200)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 100_000
    with make_client(tiny_model, max_pixels=10**10) as c:
        body = error_of(c.post("/api/explain", files=upload(("bomb.png", buf.getvalue()))), 400)
        assert body["error"] == "bomb.png: image too large to decode safely" and body["file"] == "bomb.png"


def test_body_limit(tiny_model: torch.nn.Module) -> None:
    with make_client(tiny_model, max_upload_bytes=20_000) as c:
        body = error_of(c.post("/api/explain", files=upload(("a.png", b"\x89PNG" + bytes(30_000)))), 413)
        assert body["error"] == "request body over the limit of 20,000 bytes"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
            for _ in range(10):
                yield bytes(5000)

        r = c.post("/api/explain", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        error_of(r, 413)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"top_k": "0"}, "top_k: must lie in 1..20, got 0"),
        ({"top_k": "five"}, "top_k: 'five' is not an integer"),
        ({"classes": "3,1000"}, "classes: 1000 is not a class of 'tiny-gapnet' (0..999)"),
        ({"method": "nope"}, "method: unknown method 'nope'"),
        ({"map_sizes": "5000"}, "map_sizes: 1 to 4 sizes in 32..1024 or 'native', got '5000'"),
        ({"threshold": "2"}, "threshold: must lie in 0..1, got 2.0"),
        ({"threshold_mode": "mean"}, "threshold_mode: choose one of minmax, max, got 'mean'"),
        ({"relu": "maybe"}, "relu: 'maybe' is not true or false"),
        ({"model": "other"}, "model: 'other' is not loaded; loaded: tiny-gapnet"),
    ],
)
def test_bad_options(client: TestClient, form: dict, message: str) -> None:
    body = error_of(client.post("/api/explain", files=upload(("a.png", png_bytes())), data=form), 400)
    assert body["error"].startswith(message)


def test_no_files_and_too_many(tiny_model: torch.nn.Module) -> None:
    with make_client(tiny_model, max_files=2) as c:
        assert error_of(c.post("/api/explain", data={"top_k": "1"}), 400)["error"].startswith("no image")
        files = upload(*[(f"{i}.png", png_bytes(seed=i)) for i in range(3)])
        assert "Too many files" in error_of(c.post("/api/explain", files=files), 400)["error"]


class Gate:
    """Holds the worker inside its next explain call until opened (to fill the queue deterministically)."""

    def __init__(self, worker) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.worker, self.original = worker, worker._explain

    def __enter__(self) -> Self:
        def held(groups, opt):
            self.entered.set()
            self.release.wait(30)
            return self.original(groups, opt)

        self.worker._explain = held
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.worker._explain = self.original


def blocking_job(worker, image: Image.Image) -> Job:
    job = Job(Options(next(iter(worker.models)), ExplainOptions(top_k=1)), [image], ["held.png"])
    worker.submit(job)
    return job


def test_queue_full_is_503_with_retry_after(tiny_model: torch.nn.Module) -> None:
    with make_client(tiny_model, max_queue=1) as c:
        worker = worker_of(c)
        with Gate(worker) as gate:
            held = blocking_job(worker, Image.open(io.BytesIO(png_bytes())))
            assert gate.entered.wait(10)
            r = c.post("/api/explain", files=upload(("a.png", png_bytes())))
            body = error_of(r, 503)
            assert int(r.headers["retry-after"]) >= 1 and body["error"].startswith("the server is busy")
        assert held.future.result(30)[0].record["image"] == "held.png"
        assert c.post("/api/explain", files=upload(("a.png", png_bytes()))).status_code == 200


def test_timeout_is_504_and_the_job_is_dropped(tiny_model: torch.nn.Module) -> None:
    with make_client(tiny_model, timeout_s=0.3) as c:
        worker = worker_of(c)
        with Gate(worker) as gate:
            held = blocking_job(worker, Image.open(io.BytesIO(png_bytes())))
            assert gate.entered.wait(10)
            body = error_of(c.post("/api/explain", files=upload(("late.png", png_bytes()))), 504)
            assert body["error"].startswith("no answer within 0.3 s")
        held.future.result(30)
        assert c.get("/api/health").json()["queue"]["pending"] == 0
        assert worker.images == 1  # the timed-out request was never explained


def test_waiting_requests_are_batched(tiny_model: torch.nn.Module) -> None:
    with make_client(tiny_model, max_batch=8) as c:
        worker = worker_of(c)
        images = [Image.open(io.BytesIO(png_bytes(seed=s))) for s in range(4)]
        with Gate(worker) as gate:
            first = blocking_job(worker, images[0])
            assert gate.entered.wait(10)
            same = [
                Job(Options("tiny-gapnet", ExplainOptions(top_k=2)), [im], [f"{i}.png"])
                for i, im in enumerate(images[1:])
            ]
            other = Job(Options("tiny-gapnet", ExplainOptions(top_k=2, method="gradcam")), [images[0]], ["g.png"])
            for job in [same[0], other, *same[1:]]:
                worker.submit(job)
        for job in [first, *same, other]:
            job.future.result(30)
        assert (worker.calls, worker.images) == (3, 5)  # the held one, the three alike together, the Grad-CAM one
        for job, im in zip(same, images[1:], strict=True):
            alone = camloc.explain(tiny_model, [im], top_k=2)
            got = job.future.result()[0]
            assert got.record["predictions"][0]["box"] == alone.boxes[0, 0].tolist()
            assert [p["class_index"] for p in got.record["predictions"]] == alone.classes[0].tolist()


def test_one_failing_image_does_not_take_down_the_others(
    tiny_model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image whose explain fails (here: any 13-pixel-wide one) is answered 500 by name; the rest of its request
    and of its batch are explained (the worker retries job by job, then image by image)."""
    with make_client(tiny_model, max_batch=8) as c:
        worker = worker_of(c)
        original = worker._explain

        def fragile(groups, opt):
            if any(im.width == 13 for ims, _ in groups for im in ims):
                raise RuntimeError("boom")
            return original(groups, opt)

        monkeypatch.setattr(worker, "_explain", fragile)
        files = upload(("a.png", png_bytes(seed=5)), ("odd.png", png_bytes((13, 40))), ("b.png", png_bytes(seed=6)))
        body = c.post("/api/explain", files=files, data={"top_k": "1"}).json()
        assert [r["image"] for r in body["results"]] == ["a.png", "b.png"]
        assert body["errors"] == [
            {"file": "odd.png", "error": "odd.png: explain failed (RuntimeError: boom)", "status": 500, "index": 1}
        ]
        body = error_of(c.post("/api/explain", files=upload(("odd.png", png_bytes((13, 40))))), 500)
        assert body["error"] == "odd.png: explain failed (RuntimeError: boom)" and body["file"] == "odd.png"


def test_no_python_objects_pile_up(client: TestClient) -> None:
    """100 requests after a warm-up leave the number of live Python containers as it was (what a request makes,
    its images, maps and answer, is freed with the answer: a leak of one dict or list per request would show)."""
    import gc

    data = png_bytes(seed=9)

    def post() -> None:
        form = {"top_k": "3", "map_sizes": "native"}
        assert client.post("/api/explain", files=upload(("a.png", data)), data=form).status_code == 200

    for _ in range(10):
        post()
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(100):
        post()
    gc.collect()
    assert len(gc.get_objects()) - before < 50
