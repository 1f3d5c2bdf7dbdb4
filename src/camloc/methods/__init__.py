"""Map methods: how raw class maps are computed from a model and an input batch.

Every method has the same signature (see `base.MapMethod`): given a model, a preprocessed batch and either explicit
classes or a top-k count, it returns (logits (B, K), classes (B, k), raw maps (B, k, h, w)). Everything after the
raw maps (upsampling, normalisation, boxes, writers, metrics) is shared and does not know which method ran.
"""

from __future__ import annotations

from camloc.methods.base import MapMethod, get_method, register_method
from camloc.methods.cam import CAM

__all__ = ["MapMethod", "CAM", "get_method", "register_method"]
