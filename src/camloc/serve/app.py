"""The web app of `camloc serve`: a JSON API over `camloc.explain` and the offline page that uses it.

Routes:
    GET  /                the page (static files under /static: no build step, no CDN)
    POST /api/explain     multipart: one or more `files` + options -> the CLI's JSON records plus the maps
    GET  /api/labels      the class names of a model
    GET  /api/models      the loaded models, the map methods, the defaults
    GET  /api/health      liveness, queue depth, calls served
    GET  /api/colormap    the 256 RGB colours of a colormap (the page colours maps as `camloc.viz` does)

Every error is JSON `{"error": "<file>: <reason>", "file": ..., "errors": [...]}` with a status saying what went
wrong: 413 body too large, 415 not an image, 400 corrupt / too many pixels / bad option, 503 queue full (with
Retry-After), 504 time-out. Upload names label results only; nothing the client sends is used as a path.

Maps travel as PNGs whose red and green channels hold a 16-bit level of the normalised map (q = round(m * 65535),
R = q >> 8, G = q & 255) with the map's [min, max] before normalisation, so the page can redraw the box at another
threshold; the box in the JSON (the library's) is the authoritative one.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from torch import nn

from camloc import __version__, viz
from camloc.boxes import DEFAULT_BOX_RULE, THRESHOLD_MODES, BoxRule, ThresholdMode
from camloc.errors import ImageTooLargeError, InputError, NotAnImageError
from camloc.explainer.passes import DEFAULT_MAP_SIZES, DEFAULT_RELU
from camloc.explainer.runner import ExplainOptions
from camloc.io import decode_image_bytes
from camloc.methods import METHODS, get_method
from camloc.models.zoo import info_of
from camloc.serve.worker import ImageResult, Job, Options, QueueFull, Worker

STATIC = resources.files("camloc.serve") / "static"
MAX_MAP_SIZE = 1024  # a served map pass is at most this (shorter side): larger ones cost seconds per image
MAX_NAME = 200


@dataclass(frozen=True)
class ServeConfig:
    """Limits of one server (CLI flags of `camloc serve`)."""

    max_upload_bytes: int = 20 * 1024 * 1024  # whole request body
    max_files: int = 16  # images per request
    max_pixels: int = 25_000_000  # per image, checked before decoding
    max_queue: int = 64  # requests waiting or running
    max_batch: int = 1  # images per explain call (1: no batching; `camloc serve` uses 16 on a GPU)
    timeout_s: float = 60.0  # from admission to answer
    max_top_k: int = 20


class ApiError(Exception):
    """An error answered as JSON with `status`; `file` names the upload it concerns, if one."""

    def __init__(self, status: int, message: str, file: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.file, self.headers = status, message, file, headers


def error_response(status: int, message: str, file: str | None = None, errors: list | None = None, headers=None):
    """The JSON error answer {"error", "file"[, "errors"]} with `status` (every error of the API has this form)."""
    body: dict[str, Any] = {"error": message, "file": file}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413, by Content-Length up front or by
    counting the bytes of a body sent without one."""

    class TooLarge(Exception):
        pass

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = error_response(413, f"request body over the limit of {self.limit:,} bytes")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await too_large(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyLimit.TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyLimit.TooLarge:
            if not started:
                await too_large(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: the page may load nothing from elsewhere (no CDN, offline), and no MIME sniffing."""

    CSP = (
        b"default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        b"connect-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", self.CSP), (b"x-content-type-options", b"nosniff")]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def method_names() -> list[str]:
    """Each registered map method's main name."""
    return sorted({cls.name for cls in METHODS.values()})


def safe_name(raw: str | None, index: int) -> str:
    """A display name for an upload: its base name without control characters, at most MAX_NAME characters.

    Only ever a label in JSON: never opened, joined to a path or written."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()[:MAX_NAME]
    return name or f"image-{index + 1}"


def encode_map(level: np.ndarray) -> str:
    """A (H, W) map in [0, 1] -> base64 PNG with the 16-bit level q = round(m * 65535) in R (high) and G (low)."""
    q = np.round(np.clip(np.nan_to_num(level), 0.0, 1.0) * 65535.0).astype(np.uint16)
    rgb = np.zeros((*q.shape, 3), dtype=np.uint8)
    rgb[..., 0] = q >> 8
    rgb[..., 1] = q & 0xFF
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def answer_record(result: ImageResult, index: int, with_maps: bool) -> dict[str, Any]:
    """The CLI's JSON record plus `index` (upload position) and, per prediction, `map` and `map_range`."""
    rec = dict(result.record)
    rec["index"] = index
    rec["predictions"] = [dict(p) for p in rec["predictions"]]
    for k, pred in enumerate(rec["predictions"]):
        pred["map_range"] = [float(v) if math.isfinite(v) else None for v in result.ranges[k]]  # JSON has no NaN
        if with_maps:
            pred["map"] = encode_map(result.maps[k])
    return rec


def _bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ApiError(400, f"{name}: '{text}' is not true or false")


def _int(text: str, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ApiError(400, f"{name}: '{text}' is not an integer") from None


def parse_options(
    form: Any, models: dict[str, nn.Module], default_model: str, cfg: ServeConfig
) -> tuple[Options, bool]:
    """Validate the request's option fields -> (Options, include maps). Raises ApiError(400) naming the field."""

    def field(name: str) -> str | None:
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{name}: expected a form field, got a file")
        return value

    model = field("model") or default_model
    if model not in models:
        raise ApiError(400, f"model: '{model}' is not loaded; loaded: {', '.join(models)}")
    num_classes = len(info_of(models[model]).labels) or _num_classes(models[model])
    top_k = _int(field("top_k") or "5", "top_k")
    if not 1 <= top_k <= min(cfg.max_top_k, num_classes):
        raise ApiError(400, f"top_k: must lie in 1..{min(cfg.max_top_k, num_classes)}, got {top_k}")
    classes = None
    classes_text = field("classes")
    if classes_text:
        classes = tuple(_int(c, "classes") for c in classes_text.split(",") if c.strip())
        if not 1 <= len(classes) <= cfg.max_top_k:
            raise ApiError(400, f"classes: give 1 to {cfg.max_top_k} class indices")
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ApiError(400, f"classes: {bad[0]} is not a class of '{model}' (0..{num_classes - 1})")
    method = (field("method") or "cam").strip().lower()
    try:
        method = get_method(method).name
    except InputError as exc:
        raise ApiError(400, f"method: {exc}") from None
    map_sizes: tuple[int, ...] | None = None
    sizes_text = (field("map_sizes") or "").strip().lower()
    if sizes_text == "native":
        map_sizes = ()
    elif sizes_text:
        map_sizes = tuple(_int(s, "map_sizes") for s in sizes_text.split(",") if s.strip())
        if not 1 <= len(map_sizes) <= 4 or any(not 32 <= s <= MAX_MAP_SIZE for s in map_sizes):
            raise ApiError(400, f"map_sizes: 1 to 4 sizes in 32..{MAX_MAP_SIZE} or 'native', got '{sizes_text}'")
    try:
        threshold = float(field("threshold") or DEFAULT_BOX_RULE.threshold)
    except ValueError:
        raise ApiError(400, f"threshold: '{field('threshold')}' is not a number") from None
    if not 0.0 <= threshold <= 1.0:
        raise ApiError(400, f"threshold: must lie in 0..1, got {threshold}")
    mode = (field("threshold_mode") or DEFAULT_BOX_RULE.mode).strip().lower()
    if mode not in THRESHOLD_MODES:
        raise ApiError(400, f"threshold_mode: choose one of {', '.join(THRESHOLD_MODES)}, got '{mode}'")
    relu = _bool(field("relu") or str(DEFAULT_RELU), "relu")
    with_maps = _bool(field("maps") or "true", "maps")
    settings = ExplainOptions(
        top_k=top_k,
        targets=classes,
        method=method,
        map_sizes=map_sizes,
        relu=relu,
        box_rule=BoxRule(threshold, cast(ThresholdMode, mode)),
    )
    return Options(model, settings), with_maps


def _num_classes(model: nn.Module) -> int:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return int(getattr(model, "num_classes", 0) or (linears[-1].out_features if linears else 0))


def decode_upload(data: bytes, name: str, max_pixels: int) -> Image.Image | dict[str, Any]:
    """The decoded image, or the error entry {"file", "error", "status"} (415 not an image, 400 otherwise)."""
    try:
        return decode_image_bytes(data, name, max_pixels=max_pixels)
    except NotAnImageError as exc:
        return {"file": name, "error": str(exc), "status": 415}
    except (ImageTooLargeError, InputError) as exc:
        return {"file": name, "error": str(exc), "status": 400}


def decode_uploads(datas: list[bytes], names: list[str], max_pixels: int) -> list[Image.Image | dict[str, Any]]:
    """`decode_upload` for each upload, in order."""
    return [decode_upload(d, n, max_pixels) for d, n in zip(datas, names, strict=True)]


def model_names(models: list[nn.Module]) -> dict[str, nn.Module]:
    """Models by display name (a counter is added where two share one)."""
    out: dict[str, nn.Module] = {}
    for m in models:
        name = info_of(m).name
        n = 1
        while name in out:
            n += 1
            name = f"{info_of(m).name} ({n})"
        out[name] = m
    return out


def create_app(models: nn.Module | list[nn.Module], config: ServeConfig | None = None) -> FastAPI:
    """The app serving `models` (the first is the default). Starts the inference thread; it stops at shutdown."""
    cfg = config or ServeConfig()
    by_name = model_names(models if isinstance(models, list) else [models])
    default = next(iter(by_name))
    worker = Worker(by_name, max_queue=cfg.max_queue, max_batch=cfg.max_batch)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        worker.close()

    app = FastAPI(title="camloc serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker, app.state.config, app.state.models = worker, cfg, by_name

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.file, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__}: {exc})")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "models": list(by_name),
            "queue": {"pending": worker.pending, "limit": cfg.max_queue},
            "explain_calls": worker.calls,
            "images": worker.images,
            "explain_seconds": round(worker.explain_s, 3),
        }

    @app.get("/api/models")
    async def list_models() -> dict[str, Any]:
        rows = []
        for name, m in by_name.items():
            info = info_of(m)
            p = next(iter(m.parameters()), None)
            rows.append(
                {
                    "name": name,
                    "default": name == default,
                    "num_classes": len(info.labels) or _num_classes(m),
                    "input_size": info.preprocess.input_size,
                    "device": str(p.device) if p is not None else "cpu",
                }
            )
        return {
            "models": rows,
            "methods": method_names(),
            "threshold_modes": list(THRESHOLD_MODES),
            "defaults": {
                "top_k": 5,
                "method": "cam",
                "map_sizes": list(DEFAULT_MAP_SIZES),
                "threshold": DEFAULT_BOX_RULE.threshold,
                "threshold_mode": DEFAULT_BOX_RULE.mode,
                "relu": DEFAULT_RELU,
            },
            "limits": {
                "max_upload_bytes": cfg.max_upload_bytes,
                "max_files": cfg.max_files,
                "max_pixels": cfg.max_pixels,
                "max_top_k": cfg.max_top_k,
                "max_map_size": MAX_MAP_SIZE,
                "max_batch": cfg.max_batch,
                "max_queue": cfg.max_queue,
                "timeout_s": cfg.timeout_s,
            },
        }

    @app.get("/api/labels")
    async def labels(model: str | None = None) -> dict[str, Any]:
        name = model or default
        if name not in by_name:
            raise ApiError(404, f"model: '{name}' is not loaded; loaded: {', '.join(by_name)}")
        m = by_name[name]
        info = info_of(m)
        names = list(info.labels) or [info.label(i) for i in range(_num_classes(m))]
        return {"model": name, "labels": names}

    @app.get("/api/colormap")
    async def colormap(name: str = "inferno") -> dict[str, Any]:
        if name not in viz.COLORMAPS:
            raise ApiError(404, f"colormap: '{name}' is unknown; choose one of {', '.join(sorted(viz.COLORMAPS))}")
        lut = viz.colorize(np.arange(256, dtype=np.float64)[None] / 255.0, name)[0]
        return {"name": name, "lut": lut.tolist()}

    @app.post("/api/explain")
    async def explain_route(request: Request) -> Response:
        form = await request.form(max_files=cfg.max_files, max_fields=64)
        try:
            options, with_maps = parse_options(form, by_name, default, cfg)
            uploads = [u for u in form.getlist("files") if not isinstance(u, str)]
            if not uploads:
                raise ApiError(400, "no image: send one or more files in the multipart field 'files'")
            names = [safe_name(u.filename, i) for i, u in enumerate(uploads)]
            datas = [await u.read() for u in uploads]
        finally:
            await form.close()
        decoded = await run_in_threadpool(decode_uploads, datas, names, cfg.max_pixels)
        datas.clear()
        errors = [dict(d, index=i) for i, d in enumerate(decoded) if isinstance(d, dict)]
        good = [(i, d) for i, d in enumerate(decoded) if not isinstance(d, dict)]
        if not good:
            statuses = {e["status"] for e in errors}
            status = statuses.pop() if len(statuses) == 1 else 400
            return error_response(status, errors[0]["error"], errors[0]["file"], errors)
        job = Job(options, [im for _, im in good], [names[i] for i, _ in good])
        try:
            future = worker.submit(job)
        except QueueFull as exc:
            return error_response(503, str(exc), headers={"Retry-After": str(exc.retry_after)})
        try:
            answers = await asyncio.wait_for(asyncio.wrap_future(future), timeout=cfg.timeout_s)
        except asyncio.TimeoutError:
            return error_response(504, f"no answer within {cfg.timeout_s:g} s (the server is busy or the method slow)")
        except InputError as exc:
            return error_response(400, str(exc))
        results = []
        for (index, _), answer in zip(good, answers, strict=True):
            if isinstance(answer, ImageResult):
                results.append(answer)
            else:
                status = 400 if isinstance(answer, InputError) else 500
                errors.append({"file": names[index], "error": str(answer), "status": status, "index": index})
        if not results:
            return error_response(errors[0]["status"], errors[0]["error"], errors[0]["file"], errors)
        indices = [i for (i, _), a in zip(good, answers, strict=True) if isinstance(a, ImageResult)]
        errors.sort(key=lambda e: e["index"])

        def body() -> bytes:  # PNG encoding and JSON of a few MB: in the thread pool, not on the event loop
            records = [answer_record(r, i, with_maps) for r, i in zip(results, indices, strict=True)]
            return json.dumps({"results": records, "errors": errors}).encode("utf-8")

        return Response(await run_in_threadpool(body), media_type="application/json")

    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    return app
