"""Tests of camloc.training, mirroring src/camloc."""
