"""Graphs exported once per session: the default model (EfficientNet-Lite0, ImageNet weights) and a small
random-weight GAP net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import camloc
from camloc.export import export_onnx

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="session")
def default_graph(default_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory):
    """(path, report) of the default model exported with top-5 CAMs at feature resolution."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path_factory.mktemp("onnx") / "default.onnx"
        return path, export_onnx(default_model, path, top_k=5)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return camloc.load("gapnet").eval()


@pytest.fixture(scope="session")
def small_graph(small_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "gapnet.onnx"
    export_onnx(small_model, path, top_k=3)
    return path
