"""camloc: class activation maps and weakly-supervised object localization for PyTorch classifiers.

    import camloc
    model = camloc.load("default")
    res = camloc.explain(model, ["photo.jpg"], top_k=5)

The names below are imported on first use, so `import camloc` (and `camloc --version`) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load": "camloc.models.zoo",
    "explain": "camloc.explainer.passes",
    "Result": "camloc.explainer.result",
    "BoxRule": "camloc.boxes",
    "DEFAULT_BOX_RULE": "camloc.boxes",
    "InputError": "camloc.errors",
    "HeadError": "camloc.errors",
    "LayerError": "camloc.errors",
    "evaluate": "camloc.localize.evaluation",
    "Settings": "camloc.localize.evaluation",
    "open_dataset": "camloc.data",
}
__all__ = [
    "DEFAULT_BOX_RULE",
    "BoxRule",
    "HeadError",
    "InputError",
    "LayerError",
    "Result",
    "Settings",
    "__version__",
    "evaluate",
    "explain",
    "load",
    "open_dataset",
]

if TYPE_CHECKING:
    from camloc.boxes import DEFAULT_BOX_RULE, BoxRule
    from camloc.data import open_dataset
    from camloc.errors import HeadError, InputError, LayerError
    from camloc.explainer.passes import explain
    from camloc.explainer.result import Result
    from camloc.localize.evaluation import Settings, evaluate
    from camloc.models.zoo import load


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'camloc' has no attribute '{name}'")
