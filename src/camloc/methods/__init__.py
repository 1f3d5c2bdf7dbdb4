"""Map methods: how raw class maps are computed from a model and an input batch.

Every method has the same signature (see `base.MapMethod`): given a model, a preprocessed batch and either explicit
classes or a top-k count, it returns (logits (B, K), classes (B, k), raw maps (B, k, h, w)). Everything after the
raw maps (upsampling, normalisation, boxes, writers, metrics) is shared and does not know which method ran.

Families, one module each: `cam` (CAM, one forward pass), `gradient` (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM),
`scorecam` (Score-CAM); `layers` finds and records the layer they explain. Names: see `METHODS`.
"""

from __future__ import annotations

from camloc.errors import LayerError
from camloc.methods.base import METHODS, MapMethod, get_method, register_method
from camloc.methods.cam import CAM
from camloc.methods.gradient import GradCAM, GradCAMPlusPlus, GradientMethod, LayerCAM, XGradCAM
from camloc.methods.layers import default_layer_name
from camloc.methods.scorecam import ScoreCAM

__all__ = [
    "CAM",
    "METHODS",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientMethod",
    "LayerCAM",
    "LayerError",
    "MapMethod",
    "ScoreCAM",
    "XGradCAM",
    "default_layer_name",
    "get_method",
    "register_method",
]
