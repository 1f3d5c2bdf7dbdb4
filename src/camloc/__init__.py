"""camloc: class activation maps and weakly-supervised object localization for PyTorch classifiers.

import camloc
model = camloc.load("default")
res = camloc.explain(model, ["photo.jpg"], top_k=5)

`load`, `explain` and `Result` are imported on first use (PEP 562), so that torch-free parts such as
`camloc.onnx_runtime` can be imported where PyTorch is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "__version__", "explain", "load"]

_LAZY = {"load": "camloc.models.zoo", "explain": "camloc.explainer", "Result": "camloc.explainer"}

if TYPE_CHECKING:
    from camloc.explainer import Result, explain
    from camloc.models.zoo import load


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'camloc' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
