"""Deployable CAMs: export a CAM-exact classifier to one ONNX graph (`camloc.export.onnx`)."""

from camloc.export.onnx import ExportReport, export_onnx

__all__ = ["ExportReport", "export_onnx"]
