"""The inference queue of `camloc serve`: one thread owns the models and runs `camloc.explain`, off the event loop.

Requests are admitted while fewer than `max_queue` are waiting or running (else `QueueFull`, which the app turns
into 503 + Retry-After). Requests whose options agree and that are waiting together are explained in one call
(at most `max_batch` images): under load the queue fills while a batch runs, so batching costs no added latency
when the server is idle. `explain` itself groups the batch's images by preprocessed shape.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from camloc.errors import InputError
from camloc.explainer import writers
from camloc.explainer.runner import ExplainOptions


class QueueFull(RuntimeError):
    """The bounded work queue has no room; `retry_after` is a guess in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Options:
    """A request's settings: the model's name and the `camloc.explain` settings (validated by the app)."""

    model: str
    explain: ExplainOptions

    def batch_key(self) -> tuple:
        """Requests with equal keys share one `explain` call."""
        return (self.model, self.explain)


@dataclass
class ImageResult:
    """One explained image: the CLI's JSON record, its (k, H, W) float32 maps in [0, 1] and their (k, 2) ranges."""

    record: dict[str, Any]
    maps: np.ndarray
    ranges: np.ndarray


@dataclass
class Job:
    """One request: its decoded images, their display names, and the future its answer goes to.

    The answer is a list with, per image, an `ImageResult` or an `InputError`/`RuntimeError` for that image alone.
    """

    options: Options
    images: list[Image.Image]
    names: list[str]
    future: Future = field(default_factory=Future)


class Worker:
    """A thread that explains queued jobs, batching compatible ones (see the module docstring)."""

    def __init__(self, models: dict[str, nn.Module], max_queue: int = 64, max_batch: int = 16) -> None:
        self.models = models
        self.max_queue = max(1, int(max_queue))
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._admitted = 0  # waiting or running
        self._busy_s = 0.0  # EMA of seconds per explain call, for Retry-After
        self.calls = 0  # explain calls made
        self.images = 0  # images explained
        self.explain_s = 0.0  # seconds spent inside those calls (the model's share of the serving time)
        self._thread = threading.Thread(target=self._loop, name="camloc-serve-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ public
    def submit(self, job: Job) -> Future:
        """Queue a job, or raise `QueueFull` when `max_queue` jobs are already waiting or running."""
        with self._lock:
            if self._admitted >= self.max_queue:
                raise QueueFull(self._retry_after_locked())
            self._admitted += 1
        job.future.add_done_callback(lambda _f: self._release())
        self._queue.put(job)
        return job.future

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished."""
        with self._lock:
            return self._admitted

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after the job it is running (queued jobs are cancelled)."""
        self._queue.put(None)
        self._thread.join(timeout)

    # ----------------------------------------------------------------------------------------- private
    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def _retry_after_locked(self) -> int:
        per_call = self._busy_s or 1.0
        return max(1, math.ceil(per_call * self._admitted / self.max_batch))

    def _loop(self) -> None:
        held: deque[Job] = deque()  # jobs taken from the queue that did not fit the last batch, in order
        while True:
            job = held.popleft() if held else self._queue.get()
            if job is None:
                break
            if not job.future.set_running_or_notify_cancel():
                continue  # timed out while waiting
            batch, n, key = [job], len(job.images), job.options.batch_key()
            candidates = [*held, *self._drain()]
            held.clear()
            stop = False
            for other in candidates:
                if other is None:
                    stop = True
                elif n + len(other.images) <= self.max_batch and other.options.batch_key() == key:
                    if other.future.set_running_or_notify_cancel():
                        batch.append(other)
                        n += len(other.images)
                else:
                    held.append(other)
            try:
                self._run(batch)
            except Exception as exc:  # noqa: BLE001 - keep the thread alive; each waiting request gets the error
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(_failure(j.names[0], exc))
            if stop:
                break
        for job in held:
            job.future.cancel()

    def _drain(self) -> list[Job | None]:
        """Everything waiting in the queue now, without blocking."""
        out: list[Job | None] = []
        with suppress(queue.Empty):
            while True:
                out.append(self._queue.get_nowait())
        return out

    def _run(self, batch: list[Job]) -> None:
        """Explain the batch in one call; if it fails, job by job, then image by image (one bad image must not
        take down the others)."""
        try:
            answers = self._explain([(job.images, job.names) for job in batch], batch[0].options)
        except Exception as exc:  # noqa: BLE001 - isolate the failing job / image below
            if len(batch) > 1:
                for job in batch:
                    self._run([job])
                return
            job = batch[0]
            if isinstance(exc, InputError):  # a setting wrong for every image (a class the model lacks, say)
                job.future.set_exception(exc)
            elif len(job.images) == 1:
                job.future.set_result([_failure(job.names[0], exc)])
            else:
                job.future.set_result([self._one(job, i) for i in range(len(job.images))])
            return
        for job, answer in zip(batch, answers, strict=True):
            job.future.set_result(answer)

    def _one(self, job: Job, i: int) -> ImageResult | Exception:
        try:
            return self._explain([([job.images[i]], [job.names[i]])], job.options)[0][0]
        except InputError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001
            return _failure(job.names[i], exc)

    def _explain(self, groups: list[tuple[list[Image.Image], list[str]]], opt: Options) -> list[list[ImageResult]]:
        """One `camloc.explain` call over every image of `groups`; answers split back per group."""
        images = [im for ims, _ in groups for im in ims]
        names = [nm for _, nms in groups for nm in nms]
        start = time.perf_counter()
        res = opt.explain.run(self.models[opt.model], images)
        assert res.map_range is not None  # explain always sets it
        flat = [
            ImageResult(
                writers.record(res, i, names[i]),
                writers.maps_of(res, i),
                res.map_range[i].detach().float().cpu().numpy(),
            )
            for i in range(len(images))
        ]
        elapsed = time.perf_counter() - start
        with self._lock:
            self._busy_s = elapsed if self.calls == 0 else 0.8 * self._busy_s + 0.2 * elapsed
            self.calls += 1
            self.images += len(images)
            self.explain_s += elapsed
        out, at = [], 0
        for ims, _ in groups:
            out.append(flat[at : at + len(ims)])
            at += len(ims)
        return out


def _failure(name: str, exc: Exception) -> RuntimeError:
    return RuntimeError(f"{name}: explain failed ({type(exc).__name__}: {exc})")
