"""Benchmarks run by `camloc bench` (and `make bench-loc`)."""
