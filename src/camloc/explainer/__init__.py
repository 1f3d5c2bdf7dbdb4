"""Explaining images: `passes` (the classification and map passes of `camloc.explain`), `result` (`Result`),
`runner` (file batches: decode, per-image errors, output names) and `writers` (JSON, PNG, NPZ outputs)."""
