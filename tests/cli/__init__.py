"""Tests of camloc.cli, mirroring src/camloc."""
