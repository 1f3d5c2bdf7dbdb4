"""Tests of camloc.export and camloc.onnx_runtime, mirroring src/camloc."""
