"""Localization evaluation: `evaluation` (datasets -> maps -> report, torchrun-aware), `metrics` (MaxBoxAcc,
MaxBoxAccV2, PxAP, top-k loc, as wsolevaluation), `scoring` (the benchmark's scorer); `_*` are compiled kernels."""
