"""Tests of camloc.bench, mirroring src/camloc."""
