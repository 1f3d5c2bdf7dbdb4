"""Tests of camloc.localize, mirroring src/camloc."""
