"""camloc: class activation maps and weakly-supervised object localization for PyTorch classifiers.

import camloc
model = camloc.load("default")
res = camloc.explain(model, ["photo.jpg"], top_k=5)
"""

from camloc.explainer import Result, explain
from camloc.models.zoo import load

__version__ = "0.1.0"
__all__ = ["load", "explain", "Result", "__version__"]
