"""Run an exported camloc graph without PyTorch: numpy + onnxruntime + Pillow + OpenCV.

    python -m camloc.onnx_runtime model.onnx photos/ --out results --format json     (or: camloc-onnx ...)

Reads images, runs the graph written by `camloc export` (`camloc.export.onnx`), and applies the same steps as
`camloc.explain` with its defaults: the classification pass at the model's native size (shorter side, aspect
kept), then the coarse-to-fine zoom (`--zoom`, default on): each class's map upsampled to the image gives a box,
the square windows around the small ones are cropped from the image and passed again at `Zoom.size` for the
classes the first pass chose (the graph's `classes` input), and the fine maps and boxes replace the coarse ones
there. The window geometry and the composition are `camloc.zoom`'s, the very code `camloc.explain` runs, and the
boxes come from `camloc.boxes` (`DEFAULT_BOX_RULE`: threshold "max" at 0.2). With `--zoom off` it runs map
passes at `map_sizes` instead, combined as `camloc.engine.combine_passes` does. It writes the same JSON record
(`camloc.writers.image_record`) and the same overlay and grid pictures. Importing this module never imports torch.

Upsampling here is OpenCV's bilinear resize (half-pixel centres, as PyTorch's align_corners=False); it agrees
with PyTorch's to float round-off (a few units in the last place), so a pixel lying exactly at the box
threshold could in principle fall on the other side; the tests check the boxes on the example images.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from camloc.boxes import DEFAULT_BOX_RULE, THRESHOLD_MODES, BoxRule, boxes_of_masks, threshold_masks
from camloc.errors import InputError
from camloc.explainer import writers
from camloc.explainer.inputs import iter_sources
from camloc.io import load_image, write_json, write_npz
from camloc.preprocess import Preprocess, image_to_array, parse_map_sizes
from camloc.zoom import (
    DEFAULT_MAP_SIZES,
    SCORE_KINDS,
    ZOOM_HELP,
    Window,
    Zoom,
    compose,
    parse_zoom,
    run_settings,
    share_windows,
    zoom_setting,
    zoom_windows,
)

EPS = 1e-12
METADATA_KEY = "camloc"


@dataclass
class ImageResult:
    """One image's result: k classes best first. maps are (k, H, W) in [0, 1] at the image size, raw the
    classification pass's CAMs (k, h, w), boxes (k, 4) [x0, y0, x1, y1] with x1, y1 exclusive."""

    classes: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    all_logits: np.ndarray
    raw: np.ndarray
    maps: np.ndarray
    boxes: np.ndarray
    size: tuple[int, int]  # (height, width) of the image
    labels: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


class OnnxCam:
    """An exported camloc graph in an onnxruntime session, with camloc's pre- and post-processing."""

    def __init__(self, path: str | PathLike, threads: int | None = None, providers: Sequence[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("camloc.onnx_runtime needs onnxruntime: pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the overridable `classes` initializer is by design; no warning for it
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # noqa: BLE001 - any load failure is a bad file, said in one line
            raise InputError(f"{path}: not an ONNX model onnxruntime can load ({str(exc).splitlines()[0]})") from None
        raw_meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw_meta is None:
            raise InputError(f"{path}: not a camloc graph (no '{METADATA_KEY}' metadata; export it with camloc export)")
        self.meta: dict[str, Any] = json.loads(raw_meta)
        self.preprocess = Preprocess.from_dict(self.meta["preprocess"])
        self.path = path
        self.name: str = self.meta["name"]
        self.labels: list[str] = list(self.meta.get("labels", []))
        self.top_k: int = int(self.meta["top_k"])
        self.num_classes: int = int(self.meta["num_classes"])
        fixed = self.meta.get("input_size")
        self.input_size: tuple[int, int] | None = (int(fixed[0]), int(fixed[1])) if fixed else None
        # every graph `camloc export` has written takes `classes` (an input with a default, which onnxruntime lists
        # as an overridable initializer); one without it maps its own top-k only
        inputs = [*self.session.get_inputs(), *self.session.get_overridable_initializers()]
        self.takes_classes = any(i.name == "classes" for i in inputs)

    def label(self, index: int) -> str:
        """The name of class `index`, or "class <index>" when the graph has no labels for it."""
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def run(self, x: np.ndarray, classes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The graph on a preprocessed batch x (B, 3, H, W) float32; `classes` (B, k <= top_k) int64 maps those
        classes instead of the top-k. Returns logits (B, K), classes (B, k), scores (B, k), cams (B, k, h, w)."""
        feeds = {"image": np.ascontiguousarray(x, dtype=np.float32)}
        k = self.top_k
        if classes is not None:
            if not self.takes_classes:
                raise InputError(
                    f"{self.path}: the graph has no 'classes' input, so it cannot map the first pass's classes again "
                    "(the zoom, map passes, explicit classes); re-export it with camloc export, or use --map-sizes native"
                )
            classes = np.asarray(classes, dtype=np.int64)
            k = classes.shape[1]
            if k > self.top_k:
                raise InputError(f"{k} classes per image, but the graph maps at most {self.top_k} (--top-k at export)")
            bad = (classes < 0) | (classes >= self.num_classes)
            if bad.any():
                raise InputError(f"class {int(classes[bad][0])} is out of range for {self.num_classes} classes")
            pad = np.full((classes.shape[0], self.top_k - k), -1, dtype=np.int64)  # -1: filled with the top-k
            feeds["classes"] = np.concatenate([classes, pad], axis=1)
        logits, chosen, scores, cams = self.session.run(None, feeds)
        return {"logits": logits, "classes": chosen[:, :k], "scores": scores[:, :k], "cams": cams[:, :k]}

    def prepare(self, image: Image.Image, short_side: int) -> np.ndarray:
        """An RGB image -> (3, h, w) float32 input at `short_side` (aspect kept), or at the graph's fixed size."""
        return image_to_array(image, short_side, self.preprocess, size=self.input_size)

    def explain(
        self,
        images: Sequence[Image.Image | str | PathLike],
        top_k: int | None = None,
        targets: Sequence[Sequence[int]] | None = None,
        *,
        map_sizes: Sequence[int] | None = None,
        zoom: Zoom | bool | None = None,
        relu: bool = False,
        box_rule: BoxRule = DEFAULT_BOX_RULE,
        scores: str = "softmax",
    ) -> list[ImageResult]:
        """`camloc.explain` on this graph: one `ImageResult` per image (same arguments and defaults: the zoom
        unless `zoom=False` or `map_sizes` are given; no `min_score`). scores: "softmax" (the graph's output) or
        "sigmoid" (of each logit, multi-label).

        A graph with a fixed input size has one pass only (the image resized whole to that size; map_sizes must be
        None or the native size; the default zoom is skipped, an explicit one refused), as in `camloc.explain`."""
        top_k = self.top_k if top_k is None else int(top_k)
        if not 1 <= top_k <= self.top_k:
            raise InputError(f"--top-k must lie in 1..{self.top_k} (the graph was exported with --top-k {self.top_k})")
        if scores not in SCORE_KINDS:
            raise InputError(f"scores must be one of {', '.join(SCORE_KINDS)}, got '{scores}'")
        chosen_zoom = zoom_setting(zoom, map_sizes)
        fixed = self.input_size
        native = self.preprocess.input_size if fixed is None else min(fixed)
        sizes = DEFAULT_MAP_SIZES if map_sizes is None else tuple(int(s) for s in map_sizes)
        if chosen_zoom is not None:
            sizes = ()
        if fixed is not None:  # as camloc.explain does for a model that takes one input size
            if map_sizes is not None and any(s != native for s in sizes):
                raise InputError(
                    f"{self.path}: the graph has a fixed input size ({fixed[0]}x{fixed[1]}), so map passes at other "
                    "sizes cannot run; use map sizes 'native'"
                )
            if zoom:  # asked for explicitly; the default falls back to the classification pass
                raise InputError(
                    f"{self.path}: the graph has a fixed input size ({fixed[0]}x{fixed[1]}), so the zoom cannot run"
                )
            sizes, chosen_zoom = (), None
        settings = run_settings(
            method="cam",
            layer=self.meta.get("layer", ""),
            zoom=chosen_zoom,
            map_sizes=sizes,
            relu=relu,
            threshold=box_rule.threshold,
            threshold_mode=box_rule.mode,
            native_size=native,
            scores=scores,
            fixed_input_size=fixed,
        )
        pictures = [im.convert("RGB") if isinstance(im, Image.Image) else load_image(im) for im in images]
        if not pictures:
            raise InputError("no images given")
        if targets is not None:
            target_rows = np.asarray([list(t) for t in targets], dtype=np.int64)
            if target_rows.ndim != 2 or len(target_rows) != len(pictures):
                raise InputError(f"give one list of classes per image, all of one length ({len(pictures)} images)")
        results: list[ImageResult | None] = [None] * len(pictures)
        coarse: list[np.ndarray] = [np.empty(0)] * len(pictures)  # the zoom's pass-1 maps at the image size
        for idx in _groups([self.prepare(im, native).shape for im in pictures]):
            x = np.stack([self.prepare(pictures[i], native) for i in idx])
            out = self.run(x, None if targets is None else target_rows[idx])
            classes = out["classes"][:, :top_k] if targets is None else out["classes"]
            raw = out["cams"][:, : classes.shape[1]]
            passes = [  # in explain's order: the classification pass stands in for a map pass at its size
                list(raw) if s == native else self._map_pass([pictures[i] for i in idx], s, classes)
                for s in sizes or (native,)
            ]
            for j, i in enumerate(idx):
                size = (pictures[i].height, pictures[i].width)
                combined = combine_passes([upsample(p[j], size) for p in passes], relu=relu)
                if chosen_zoom is None:
                    maps, boxes = normalize(combined), boxes_of_masks(threshold_masks(combined, box_rule))
                else:  # filled in by _zoom, once every image's windows are known
                    coarse[i], maps, boxes = combined, np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
                cls = classes[j]
                results[i] = ImageResult(
                    classes=cls,
                    scores=out["scores"][j, : len(cls)] if scores == "softmax" else _sigmoid(out["logits"][j, cls]),
                    logits=out["logits"][j, cls],
                    all_logits=out["logits"][j],
                    raw=raw[j],
                    maps=maps,
                    boxes=boxes,
                    size=size,
                    labels=[self.label(int(c)) for c in cls],
                    settings=dict(settings),
                )
        done: list[ImageResult] = [r for r in results if r is not None]
        if chosen_zoom is not None:
            self._zoom(pictures, done, coarse, chosen_zoom, box_rule, relu)
        return done

    def _zoom(
        self,
        pictures: list[Image.Image],
        results: list[ImageResult],
        coarse: list[np.ndarray],
        zoom: Zoom,
        rule: BoxRule,
        relu: bool,
    ) -> None:
        """The zoom (`camloc.zoom`, as `camloc.explain` runs it) on every image: coarse (k, H, W) pass-1 maps at the
        image sizes -> each result's maps and boxes. The windows of all images, squares of one input shape, run
        as one batch (regrouped by shape should a model's rounding make them differ)."""
        plans: list[list[tuple[Window, list[int]]]] = []
        for res, m in zip(results, coarse, strict=True):
            masks = threshold_masks(m, rule)
            height, width = m.shape[-2:]
            plans.append(share_windows(zoom_windows(boxes_of_masks(masks), height, width, zoom.expand, zoom.max_area)))
            res.boxes = boxes_of_masks(masks, zoom.components)  # the coarse boxes; compose replaces the zoomed ones
        owners = [(i, window) for i, plan in enumerate(plans) for window, _ in plan]
        crops = [self.prepare(pictures[i].crop(window), zoom.size) for i, window in owners]
        fines: list[list[np.ndarray]] = [[] for _ in plans]  # per image, per window: (k, side, side)
        fine_raw: list[np.ndarray] = [np.empty(0)] * len(crops)
        for sub in _groups([c.shape for c in crops]):
            chosen = np.stack([results[owners[t][0]].classes for t in sub])
            cams = self.run(np.stack([crops[t] for t in sub]), chosen)["cams"]
            for row, t in enumerate(sub):
                fine_raw[t] = cams[row]
        for (i, (x0, y0, x1, y1)), raw in zip(owners, fine_raw, strict=True):
            fine = upsample(raw, (y1 - y0, x1 - x0))
            fines[i].append(np.maximum(fine, 0) if relu else fine)
        for res, m, plan, fine_maps in zip(results, coarse, plans, fines, strict=True):
            fine_boxes = [boxes_of_masks(threshold_masks(f, rule), zoom.components) for f in fine_maps]
            res.maps = normalize(compose(m, res.boxes, plan, fine_maps, fine_boxes))

    def _map_pass(self, pictures: list[Image.Image], short_side: int, classes: np.ndarray) -> list[np.ndarray]:
        """Raw CAMs (k, h_j, w_j) of `classes` (n, k) from a pass at `short_side`, one per picture. Pictures that
        shared an input shape at the native size may differ at this one (rounding), so they are regrouped."""
        prepared = [self.prepare(im, short_side) for im in pictures]
        maps: list[np.ndarray] = [np.empty(0)] * len(pictures)
        for sub in _groups([x.shape for x in prepared]):
            cams = self.run(np.stack([prepared[j] for j in sub]), classes[sub])["cams"]
            for t, j in enumerate(sub):
                maps[j] = cams[t]
        return maps

    def record(self, result: ImageResult, image_name: str) -> dict[str, Any]:
        """The JSON object `camloc explain --format json` writes for this image."""
        height, width = result.size
        return writers.image_record(
            image_name,
            width,
            height,
            self.name,
            result.classes.tolist(),
            result.scores.tolist(),
            result.logits.tolist(),
            result.boxes.tolist(),
            result.labels,
            result.settings,
        )


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """Each logit's sigmoid (float32), the multi-label score."""
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def _groups(shapes: list[tuple[int, ...]]) -> list[list[int]]:
    """Indices of the images whose inputs have the same shape (batched together; no padding)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(shapes):
        groups.setdefault(tuple(s), []).append(i)
    return list(groups.values())


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling (half-pixel centres) of (k, h, w) maps to (k, H, W) float32 (OpenCV)."""
    height, width = size
    if maps.shape[-2:] == (height, width):
        return maps.astype(np.float32, copy=False)
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps.astype(np.float32)])


def combine_passes(maps: list[np.ndarray], relu: bool = False) -> np.ndarray:
    """`camloc.engine.combine_passes` on numpy arrays: n passes of (..., H, W) maps -> one (..., H, W) stack; one
    pass as is (ReLU'd if asked); several passes each divided by its largest magnitude, then averaged (float32)."""
    if len(maps) == 1:
        return np.maximum(maps[0], 0) if relu else maps[0]
    scaled = []
    for m in maps:
        m = np.maximum(m, 0) if relu else m
        scaled.append(m / np.maximum(np.abs(m).reshape(*m.shape[:-2], -1).max(-1), EPS)[..., None, None])
    total = scaled[0]
    for m in scaled[1:]:  # in order, as the torch code adds them
        total = total + m
    return (total / len(maps)).astype(np.float32)


def normalize(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max normalisation of (k, H, W) maps to [0, 1]; a map without contrast becomes zeros."""
    flat = maps.reshape(*maps.shape[:-2], -1)
    lo, hi = flat.min(-1)[..., None, None], flat.max(-1)[..., None, None]
    span = hi - lo
    scale = np.where(span > EPS, 1.0 / np.maximum(span, EPS), 0.0).astype(np.float32)
    return ((maps - lo) * scale).astype(np.float32)


# ----------------------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The `camloc-onnx` parser (the options of `camloc explain` the runtime supports)."""
    p = argparse.ArgumentParser(
        prog="camloc-onnx",
        description="Classify images and explain the top classes with an ONNX graph from `camloc export`, "
        "without PyTorch. Writes what `camloc explain` writes. Folders are searched recursively.",
    )
    p.add_argument("model", type=Path, help="the .onnx file written by camloc export")
    p.add_argument("inputs", nargs="+", help="image files and folders")
    p.add_argument("--top-k", type=int, default=None, help="number of best classes to map (default: the graph's)")
    p.add_argument("--out", default="results", type=Path, help="output folder (default: results/)")
    p.add_argument("--format", choices=["none", "json", "jsonl"], default="none")
    p.add_argument("--no-images", action="store_true", help="skip the overlay and grid PNGs")
    p.add_argument("--save-maps", action="store_true", help="write <stem>.npz with classes, maps and raw CAMs")
    p.add_argument(
        "--map-sizes",
        default=None,
        help="instead of the zoom: shorter sides of map passes, e.g. '224,448'; 'native' for the classification "
        f"pass only (with --zoom off and no sizes: {','.join(map(str, DEFAULT_MAP_SIZES))})",
    )
    p.add_argument("--zoom", default=None, help=ZOOM_HELP)
    p.add_argument("--relu", action="store_true", help="clip negative evidence before normalising maps")
    p.add_argument(
        "--scores", choices=SCORE_KINDS, default="softmax", help="softmax (default) or sigmoid (multi-label)"
    )
    p.add_argument("--threshold", type=float, default=DEFAULT_BOX_RULE.threshold, help="box threshold in [0, 1]")
    p.add_argument("--threshold-mode", choices=THRESHOLD_MODES, default=DEFAULT_BOX_RULE.mode)
    p.add_argument("--colormap", default="inferno")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    return p


def _write(cam: OnnxCam, res: ImageResult, image: Image.Image, path: Path, stem: str, args: argparse.Namespace):
    if not args.no_images:
        titles = writers.picture_titles(res.labels, res.scores.tolist())
        writers.write_picture_arrays(np.asarray(image), res.maps, res.boxes, titles, args.out, stem, args.colormap)
    if args.format == "json":
        write_json(args.out / f"{stem}.json", cam.record(res, str(path)))
    elif args.format == "jsonl":
        sys.stdout.write(json.dumps(cam.record(res, str(path))) + "\n")
        sys.stdout.flush()
    if args.save_maps:
        write_npz(args.out / f"{stem}.npz", classes=res.classes.astype(np.int64), maps=res.maps, raw=res.raw)


def _explain_batch(cam: OnnxCam, batch: list, map_sizes, zoom, args: argparse.Namespace) -> int:
    """Explain and write one batch; if it fails as a whole, retry image by image. Returns the failures."""
    if not batch:
        return 0
    try:
        results = cam.explain(
            [im for _, _, im in batch],
            top_k=args.top_k,
            map_sizes=map_sizes,
            zoom=zoom,
            relu=args.relu,
            box_rule=args.box_rule,
            scores=args.scores,
        )
    except InputError:
        raise  # a setting wrong for every image: stop with its message
    except Exception as exc:  # noqa: BLE001 - one image must not take down the batch
        if len(batch) == 1:
            print(f"camloc-onnx: skipped {batch[0][0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return sum(_explain_batch(cam, [item], map_sizes, zoom, args) for item in batch)
    for (path, stem, image), res in zip(batch, results, strict=True):
        _write(cam, res, image, path, stem, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `camloc-onnx` command; exit status 0, 1 if an image failed, 2 for a bad setting (one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except InputError as exc:
        print(f"camloc-onnx: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        sys.stderr.close()
        return 0


def _main(args: argparse.Namespace) -> int:
    from camloc.viz import COLORMAPS

    if args.colormap not in COLORMAPS:
        raise InputError(f"--colormap: unknown '{args.colormap}'; choose one of {', '.join(sorted(COLORMAPS))}")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    map_sizes = parse_map_sizes(args.map_sizes)
    zoom = parse_zoom(args.zoom)
    zoom_setting(zoom, map_sizes)  # a zoom together with map sizes: one error before any image is read
    args.box_rule = BoxRule(args.threshold, args.threshold_mode)
    cam = OnnxCam(args.model, threads=args.threads)
    sources = list(iter_sources(args.inputs, exclude=[Path(args.out)]))  # the names `camloc explain` gives
    if not sources:
        raise InputError(f"no images found in {', '.join(args.inputs)}")
    paths, stems = [s.path for s in sources], [s.name for s in sources]
    failures = 0
    for start in range(0, len(paths), args.batch_size):
        chunk = list(zip(paths[start : start + args.batch_size], stems[start : start + args.batch_size], strict=True))
        decoded = [(path, stem, _decode(path)) for path, stem in chunk]
        batch = [item for item in decoded if item[2] is not None]
        failures += len(decoded) - len(batch) + _explain_batch(cam, batch, map_sizes, zoom, args)
    if failures:
        print(f"camloc-onnx: {failures} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failures else 0


def _decode(path: Path) -> Image.Image | None:
    """The decoded image, or None after saying on stderr why it cannot be read (the batch goes on)."""
    try:
        return load_image(path)
    except InputError as exc:
        print(f"camloc-onnx: skipped {exc}", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
