"""Explain many image files: decode, batch, per-image errors, output names and writing, in one place shared by the
CLI, the server and evaluate (so that a bad file fails the same way everywhere and never stops the batch).

    options = ExplainOptions(top_k=5)
    outputs = OutputOptions(out_dir=Path("results"), pictures=True, json=True)
    summary = explain_files(model, paths, options, outputs)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import nn

from camloc.boxes import DEFAULT_BOX_RULE, BoxRule
from camloc.errors import InputError
from camloc.explainer import writers
from camloc.explainer.passes import explain
from camloc.explainer.result import Result
from camloc.io import load_image

log = logging.getLogger("camloc")


@dataclass(frozen=True)
class ExplainOptions:
    """The `camloc.explain` settings of a run (see its docstring); `targets` is one class list for every image."""

    top_k: int = 5
    targets: tuple[int, ...] | None = None
    method: str = "cam"
    layer: str | None = None
    map_sizes: tuple[int, ...] | None = None
    relu: bool = False
    box_rule: BoxRule = DEFAULT_BOX_RULE
    scores: str = "softmax"  # "sigmoid" for multi-label models
    min_score: float | None = None  # map every class whose score reaches it instead of the top-k

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise InputError(f"top-k must be at least 1, got {self.top_k}")
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
            relu=self.relu,
            box_rule=self.box_rule,
            scores=self.scores,  # type: ignore[arg-type]
            min_score=self.min_score,
        )


@dataclass(frozen=True)
class OutputOptions:
    """What is written per image into `out_dir` (see `camloc.explainer.writers`)."""

    out_dir: Path = Path("results")
    pictures: bool = True  # <stem>_overlay.png and <stem>_grid.png
    json: bool = False  # <stem>.json
    save_maps: bool = False  # <stem>.npz
    colormap: str = "inferno"

    @property
    def writes_files(self) -> bool:
        return self.pictures or self.json or self.save_maps


@dataclass
class RunSummary:
    """How a run went: images explained, images that failed with their one-line reasons."""

    done: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class Item:
    """One input of a run: its path, the name its outputs get, and the decoded image once loaded."""

    path: Path
    stem: str
    image: Image.Image | None = None


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output names: the file stem, with a counter when two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}-{n}")
    return stems


def decoded(items: Iterable[Item], on_error: Callable[[str], None]) -> Iterator[Item]:
    """The items whose file decodes (camloc.io.load_image); each other one is reported once through `on_error`."""
    for item in items:
        try:
            item.image = load_image(item.path)
        except InputError as exc:
            on_error(str(exc))
            continue
        yield item


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive lists of at most `size` items."""
    if size < 1:
        raise InputError(f"batch size must be at least 1, got {size}")
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def explain_batch(
    model: nn.Module, batch: list[Item], options: ExplainOptions, on_error: Callable[[str], None]
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
            on_error(f"{batch[0].path}: {reason}")
            return []
        log.warning("a batch of %d images failed (%s); retrying them one at a time", len(batch), reason)
        return [done for item in batch for done in explain_batch(model, [item], options, on_error)]
    return [(item, res, i) for i, item in enumerate(batch)]


def write_outputs(item: Item, res: Result, i: int, outputs: OutputOptions) -> dict[str, Any]:
    """Write image i's files as `outputs` asks (atomically) and return its JSON record."""
    assert item.image is not None
    if outputs.pictures:
        writers.write_pictures(res, i, item.image, outputs.out_dir, item.stem, colormap=outputs.colormap)
    if outputs.json:
        writers.write_record(res, i, outputs.out_dir, item.stem, str(item.path))
    if outputs.save_maps:
        writers.write_maps(res, i, outputs.out_dir, item.stem)
    return writers.record(res, i, str(item.path))


def explain_files(
    model: nn.Module,
    paths: Sequence[Path],
    options: ExplainOptions,
    outputs: OutputOptions,
    *,
    batch_size: int = 16,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Explain image files batch by batch and write their outputs; bad files are reported and skipped.

    on_record receives each image's JSON record as it is done; on_error each one-line reason (default: logged);
    progress the number of images finished since its last call.
    """
    summary = RunSummary()

    def fail(reason: str) -> None:
        summary.failed.append(reason)
        (on_error or log.error)(reason)
        if progress:
            progress(1)

    items = (Item(p, s) for p, s in zip(paths, unique_stems(paths), strict=True))
    for batch in batches(decoded(items, fail), batch_size):
        done = explain_batch(model, batch, options, fail)
        for item, res, i in done:
            record = write_outputs(item, res, i, outputs)
            summary.done += 1
            if on_record:
                on_record(record)
        if progress:
            progress(len(done))
        for item in batch:
            item.image = None  # free the decoded pixels of a finished batch
    return summary
