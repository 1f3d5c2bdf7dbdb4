"""Tests of camloc.models, mirroring src/camloc."""
