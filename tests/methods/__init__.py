"""Tests of camloc.methods, mirroring src/camloc."""
