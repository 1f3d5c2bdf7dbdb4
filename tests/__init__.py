"""Tests of camloc, mirroring src/camloc."""
