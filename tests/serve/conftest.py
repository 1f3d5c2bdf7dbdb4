"""Fixtures of the `camloc serve` tests: a small random 1000-class GAP net for the API, a live server for the browser."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import torch

from camloc.models.gapnet import GapNet
from camloc.models.zoo import ModelInfo, Preprocess, imagenet_labels
from camloc.models.zoo import _attach as attach_info


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    """A random GAP net with ImageNet's 1000 labels: CAM-exact, fast on a CPU (maps and boxes are real)."""
    torch.manual_seed(0)
    model = GapNet(num_classes=1000, final_stride=8, widths=(8, 16, 16, 16))
    return attach_info(model, ModelInfo("tiny-gapnet", imagenet_labels(), Preprocess(input_size=64)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(default_model: torch.nn.Module) -> Iterator[str]:
    """`camloc serve`'s app on the default model, run by uvicorn in a thread on a free localhost port."""
    import uvicorn

    from camloc.serve import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(default_model), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
