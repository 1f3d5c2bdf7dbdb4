"""Localization evaluation: `evaluation` (datasets -> maps -> report, torchrun-aware), `metrics` (MaxBoxAcc,
MaxBoxAccV2, PxAP, top-k loc, as wsolevaluation), `faithfulness` (deletion / insertion, drop / increase, ROAD,
pointing game), `scoring` (the benchmark's scorer); `_*` are internal (compiled kernels, the release's boxes)."""
