"""Tests of camloc.probe, mirroring src/camloc."""
