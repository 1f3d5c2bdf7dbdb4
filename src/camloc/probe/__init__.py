"""Linear probes on frozen GAP nets: `fit` (features -> scikit-learn classifier -> a loadable CAM model),
`features_cache` (pooled features cached on disk) and `bench_row` (the probe's row of the localization benchmark)."""
