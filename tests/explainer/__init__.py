"""Tests of camloc.explainer, mirroring src/camloc."""
