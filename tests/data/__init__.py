"""Tests of camloc.data, mirroring src/camloc."""
