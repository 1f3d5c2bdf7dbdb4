"""Explaining images: `passes` (the classification and map passes of `camloc.explain`), `result` (`Result`),
`runner` (file batches: decode, per-image errors, output names), `inputs` (lazy walk, output names), `stop`
(SIGINT / SIGTERM), `shards` (torchrun split and merge) and `writers` (JSON, PNG, NPZ outputs)."""
