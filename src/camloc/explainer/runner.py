"""Explain many image files: decode, batch, per-image errors, output names and writing, in one place shared by the
CLI, the server and evaluate (so that a bad file fails the same way everywhere and never stops the batch).

    options = ExplainOptions(top_k=5)
    outputs = OutputOptions(out_dir=Path("results"), pictures=True, json=True)
    summary = explain_files(model, paths, options, outputs)
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import nn

from camloc.boxes import DEFAULT_BOX_RULE, BoxRule
from camloc.errors import InputError
from camloc.explainer import writers
from camloc.explainer.inputs import Source, common_base, output_name
from camloc.explainer.passes import Zoom, check_map_sizes, check_top_k, explain
from camloc.explainer.result import Result
from camloc.explainer.stop import StopOnSignals
from camloc.io import load_image, staged_writes, write_json

log = logging.getLogger("camloc")

# Write errors that every following image would meet too: the run stops with one line instead of failing each.
FATAL_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOTDIR}

# Longer side at which files are explained: larger photos are decoded reduced (camloc.io.load_image), and their
# records give the boxes scaled back to the full size; pictures and maps are at the reduced size.
MAX_EXPLAIN_SIDE = 2048

# Pixels one model batch may hold in all: the maps of a batch cost about 140 MB a megapixel (peak RSS of
# benchmarks/bench_explain.py), so 8 MP keeps a batch near 1 GB.
DEFAULT_BATCH_PIXELS = 8_000_000


@dataclass(frozen=True)
class ExplainOptions:
    """The `camloc.explain` settings of a run (see its docstring); `targets` is one class list for every image."""

    top_k: int = 5
    targets: tuple[int, ...] | None = None
    method: str = "cam"
    layer: str | None = None
    map_sizes: tuple[int, ...] | None = None
    zoom: Zoom | bool | None = None
    relu: bool = False
    box_rule: BoxRule = DEFAULT_BOX_RULE
    scores: str = "softmax"  # "sigmoid" for multi-label models
    min_score: float | None = None  # map every class whose score reaches it instead of the top-k

    def __post_init__(self) -> None:
        check_top_k(self.top_k)  # the checks of `camloc.explain`, run before any image is read
        if self.map_sizes is not None:
            check_map_sizes(self.map_sizes)
        if self.zoom and self.map_sizes is not None:
            raise InputError("give a zoom or map sizes, not both (map sizes turn the zoom off)")
        if self.targets is not None and not self.targets:
            raise InputError("an explicit class list needs at least one class")

    def run(self, model: nn.Module, images: Sequence[Image.Image]) -> Result:
        """`camloc.explain` on decoded images with these settings."""
        targets = None if self.targets is None else [list(self.targets)] * len(images)
        return explain(
            model,
            list(images),
            top_k=self.top_k,
            targets=targets,
            method=self.method,
            layer=self.layer,
            map_sizes=self.map_sizes,
            zoom=self.zoom,
            relu=self.relu,
            box_rule=self.box_rule,
            scores=self.scores,  # type: ignore[arg-type]
            min_score=self.min_score,
        )


@dataclass(frozen=True)
class OutputOptions:
    """What is written per image into `out_dir` (see `camloc.explainer.writers`), and whether a rerun into the same
    folder skips the images whose outputs are already complete (`resume`)."""

    out_dir: Path = Path("results")
    pictures: bool = True  # <name>_overlay.png and <name>_grid.png
    json: bool = False  # <name>.json
    save_maps: bool = False  # <name>.npz
    colormap: str = "inferno"
    resume: bool = False

    @property
    def writes_files(self) -> bool:
        return self.pictures or self.json or self.save_maps

    def files_of(self, name: str) -> list[Path]:
        """The files image `name` gets."""
        files = []
        if self.pictures:
            files += [self.out_dir / f"{name}_overlay.png", self.out_dir / f"{name}_grid.png"]
        if self.json:
            files.append(self.out_dir / f"{name}.json")
        if self.save_maps:
            files.append(self.out_dir / f"{name}.npz")
        return files


@dataclass
class RunSummary:
    """How a run went: images explained, skipped as already complete (`--resume`), failed (one-line reasons), and
    why it stopped early if it did (`interrupted`: the signal's name; `stopped`: an output error for all images)."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    interrupted: str | None = None
    stopped: str | None = None

    @property
    def seen(self) -> int:
        """Inputs looked at so far: done + skipped + failed."""
        return self.done + self.skipped + len(self.failed)

    def as_dict(self) -> dict[str, Any]:
        """The summary as a JSON object: counts, the failures' lines and why the run stopped (each rank's part of
        `explain-summary.json` under torchrun)."""
        return {
            "done": self.done,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "failures": self.failed,
            "interrupted": self.interrupted,
            "stopped": self.stopped,
        }


@dataclass
class Item:
    """One input of a run: its place in the input order, path, output name, and the decoded image once loaded."""

    index: int
    path: Path
    name: str
    image: Image.Image | None = None


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output names of a list of files (`camloc.explainer.inputs.output_name` relative to their common folder)."""
    base = common_base([p for p in paths if p.exists()] or [Path.cwd()])
    return [output_name(p, base) for p in paths]


def is_complete(path: Path) -> bool:
    """Whether an output file is whole: a PNG ending with its IEND chunk, a JSON record that parses, an .npz whose
    zip directory reads. Checked, not assumed: a file cut short by a crash is redone."""
    try:
        if path.suffix == ".png":
            with path.open("rb") as fh:
                if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                    return False
                fh.seek(-12, os.SEEK_END)
                return fh.read(12) == _PNG_END
        if path.suffix == ".json":
            rec = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(rec, dict) and "predictions" in rec
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as zf:
                return {"classes.npy", "maps.npy", "raw.npy"} <= set(zf.namelist())
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return path.is_file()


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def decoded(
    items: Iterable[Item], on_error: Callable[[Item, str], None], workers: int = 2, lookahead: int = 8
) -> Iterator[Item]:
    """The items whose file decodes (camloc.io.load_image), in order; each other one is reported once through
    `on_error`. With `workers` > 0 files are decoded in that many threads (Pillow releases the GIL while decoding),
    at most `lookahead` ahead of the consumer, so that decoding overlaps the model and memory stays bounded."""

    def load(item: Item) -> Image.Image | str:
        try:
            return load_image(item.path, max_side=MAX_EXPLAIN_SIDE)
        except InputError as exc:
            return str(exc)
        except OSError as exc:  # e.g. a FIFO or a file that cannot be opened
            return f"{item.path}: cannot read ({exc.strerror or exc})"

    def settle(item: Item, got: Image.Image | str) -> Item | None:
        if isinstance(got, str):
            on_error(item, got)
            return None
        item.image = got
        return item

    if workers <= 0:
        for item in items:
            if (done := settle(item, load(item))) is not None:
                yield done
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camloc-decode")
    pending: deque[tuple[Item, Future]] = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(load, item)))
            while len(pending) >= max(lookahead, 1):
                head, fut = pending.popleft()
                if (done := settle(head, fut.result())) is not None:
                    yield done
        while pending:
            head, fut = pending.popleft()
            if (done := settle(head, fut.result())) is not None:
                yield done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def batches(items: Iterable[Item], size: int, max_pixels: int = DEFAULT_BATCH_PIXELS) -> Iterator[list[Item]]:
    """Consecutive lists of at most `size` decoded items and at most `max_pixels` pixels in all (an image larger
    than that goes alone), so that memory follows the pixel count and not the image size times the batch size."""
    check_batch_size(size)
    batch: list[Item] = []
    pixels = 0
    for item in items:
        assert item.image is not None
        n = item.image.width * item.image.height
        if batch and pixels + n > max_pixels:
            yield batch
            batch, pixels = [], 0
        batch.append(item)
        pixels += n
        if len(batch) == size:
            yield batch
            batch, pixels = [], 0
    if batch:
        yield batch


def explain_batch(
    model: nn.Module, batch: list[Item], options: ExplainOptions, on_error: Callable[[Item, str], None]
) -> list[tuple[Item, Result, int]]:
    """(item, result, index in the result) for each item of a decoded batch that could be explained.

    `explain` batches images of any sizes itself. A setting that is wrong for every image (bad class, method or
    head) raises its `InputError`; any other failure of the whole batch (say, memory) is said (a warning) and
    retried image by image, so that one image cannot take down the others.
    """
    if not batch:
        return []
    try:
        res = options.run(model, [it.image for it in batch if it.image is not None])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - one image must not take down the batch
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if len(batch) == 1:
            on_error(batch[0], f"{batch[0].path}: {reason}")
            return []
        log.warning("a batch of %d images failed (%s); retrying them one at a time", len(batch), reason)
        return [done for item in batch for done in explain_batch(model, [item], options, on_error)]
    return [(item, res, i) for i, item in enumerate(batch)]


def write_outputs(item: Item, res: Result, i: int, outputs: OutputOptions) -> dict[str, Any]:
    """Write image i's files as `outputs` asks and return its JSON record. The files appear together or not at
    all (`camloc.io.staged_writes`): an error or an interrupt leaves no image with only some of its outputs."""
    assert item.image is not None
    rec = writers.record(res, i, str(item.path))
    full = item.image.info.get("camloc_full_size")
    if full is not None:
        rec = full_size_record(rec, full)
    with staged_writes():
        if outputs.pictures:
            writers.write_pictures(res, i, item.image, outputs.out_dir, item.name, colormap=outputs.colormap)
        if outputs.json:
            write_json(outputs.out_dir / f"{item.name}.json", rec)
        if outputs.save_maps:
            writers.write_maps(res, i, outputs.out_dir, item.name)
    return rec


def full_size_record(rec: dict[str, Any], full: tuple[int, int]) -> dict[str, Any]:
    """A record of an image explained reduced, in the full image's pixels: width, height and boxes scaled back
    (x1, y1 stay exclusive), and the size that was explained in `explained_size`."""
    w, h = rec["width"], rec["height"]
    sx, sy = full[0] / w, full[1] / h
    for pred in rec["predictions"]:
        x0, y0, x1, y1 = pred["box"]
        pred["box"] = [
            min(full[0], int(x0 * sx)),
            min(full[1], int(y0 * sy)),
            min(full[0], math.ceil(x1 * sx)),
            min(full[1], math.ceil(y1 * sy)),
        ]
    return {**rec, "width": full[0], "height": full[1], "explained_size": [w, h]}


def check_batch_size(size: int) -> int:
    """The one check of a batch size (API and every command): an integer of at least 1."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"batch size must be an integer of at least 1, got {size!r}")
    return size


def explain_files(
    model: nn.Module,
    sources: Iterable[Source] | Sequence[str | os.PathLike],
    options: ExplainOptions,
    outputs: OutputOptions,
    *,
    batch_size: int = 16,
    max_batch_pixels: int = DEFAULT_BATCH_PIXELS,
    workers: int = 2,
    rank: int = 0,
    world: int = 1,
    stop: StopOnSignals | None = None,
    on_record: Callable[[int, dict[str, Any]], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Explain image files batch by batch and write their outputs; bad files are reported and skipped.

    sources: `Source`s (`camloc.explainer.inputs.iter_sources`, lazily) or plain paths (named by `unique_stems`).
    rank, world: this process takes the inputs whose position i has i % world == rank (torchrun sharding).
    stop: a `StopOnSignals` whose request ends the run after the current batch (`summary.interrupted`).
    on_record receives (input position, JSON record) of each image as it is done; on_error each one-line reason
    (default: logged); progress the number of images finished since its last call. A write error that will hit
    every image (disk full, read-only) ends the run cleanly with `summary.stopped`; others fail their image only.
    """
    check_batch_size(batch_size)
    if outputs.resume and not outputs.writes_files:
        raise InputError("resume needs outputs in the output folder to check (pictures, JSON or maps)")
    summary = RunSummary()
    srcs = as_sources(sources)

    def fail(item: Item, reason: str) -> None:
        summary.failed.append(reason)
        (on_error or log.error)(reason)
        if progress:
            progress(1)

    def todo() -> Iterator[Item]:
        for index, src in enumerate(srcs):
            if index % world != rank:
                continue
            if outputs.resume and all(is_complete(f) for f in outputs.files_of(src.name)):
                summary.skipped += 1
                if on_record and outputs.json:  # the JSONL of a resumed run still lists every image
                    on_record(index, json.loads((outputs.out_dir / f"{src.name}.json").read_text(encoding="utf-8")))
                if progress:
                    progress(1)
                continue
            yield Item(index, src.path, src.name)

    if stop is not None and stop.requested:  # a signal while the model was loading
        summary.interrupted = stop.signal_name
        return summary
    for batch in batches(decoded(todo(), fail, workers=workers), batch_size, max_batch_pixels):
        done = explain_batch(model, batch, options, fail)
        for item, res, i in done:
            try:
                record = write_outputs(item, res, i, outputs)
            except OSError as exc:
                reason = f"cannot write the outputs of {item.path} to {outputs.out_dir}: {exc.strerror or exc}"
                if exc.errno in FATAL_WRITE_ERRNOS:
                    summary.stopped = reason
                    break
                fail(item, reason)
                continue
            summary.done += 1
            if on_record:
                on_record(item.index, record)
            if progress:
                progress(1)
        for item in batch:
            item.image = None  # free the decoded pixels of a finished batch
        if summary.stopped:
            break
        if stop is not None and stop.requested:
            summary.interrupted = stop.signal_name
            break
    return summary


def as_sources(sources: Iterable[Source] | Sequence[str | os.PathLike]) -> Iterable[Source]:
    """`Source`s as given, or a list of paths named by `unique_stems` (a list is already in memory)."""
    if isinstance(sources, (list, tuple)) and not all(isinstance(s, Source) for s in sources):
        paths = [Path(p) for p in sources]
        return [Source(p, n) for p, n in zip(paths, unique_stems(paths), strict=True)]
    return sources  # type: ignore[return-value]
