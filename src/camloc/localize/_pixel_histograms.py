"""Histograms of a score map's values at foreground and background pixels in one compiled pass (PxAP).

`np.histogram`'s bins (`[e_i, e_i+1)`, the last one closed) against the threshold edges, as the reference's
`np.histogram(scoremap[mask], bins=edges)`, without the masked copies and the binary search per value: each
value's bin is guessed from the edges' spacing and corrected by exact comparisons with the edges, so the result
is the same for any increasing edges (only the speed relies on them being close to uniform).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["masked_histograms"]


@njit(cache=True, nogil=True)
def _masked_histograms(values: np.ndarray, foreground: np.ndarray, ignore: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n_bins = edges.shape[0] - 1
    fg_hist = np.zeros(n_bins, dtype=np.int64)
    bg_hist = np.zeros(n_bins, dtype=np.int64)
    lo, hi = edges[0], edges[n_bins]
    scale = 1.0 / (edges[1] - edges[0])  # the first bin's width: exact for np.arange thresholds but for rounding
    for j in range(values.shape[0]):
        v = values[j]
        if not (lo <= v <= hi):  # outside the edges (or NaN): counted by no bin, as np.histogram
            continue
        guess = (v - lo) * scale  # NaN when v == lo and the first bin is denormal-thin (scale = inf)
        k = n_bins - 1 if guess >= n_bins - 1 else int(guess) if guess > 0 else 0  # clamped as a float
        while k > 0 and v < edges[k]:
            k -= 1
        while k < n_bins - 1 and v >= edges[k + 1]:
            k += 1
        if foreground[j]:
            fg_hist[k] += 1
        elif not ignore[j]:  # a foreground pixel counts even inside an ignore region
            bg_hist[k] += 1
    out = np.empty((2, n_bins), dtype=np.int64)
    out[0], out[1] = fg_hist, bg_hist
    return out


def masked_histograms(
    scoremap: np.ndarray, foreground: np.ndarray, ignore: np.ndarray | None, edges: np.ndarray
) -> np.ndarray:
    """(2, len(edges) - 1) int64: `np.histogram` counts of the map's values at foreground pixels ([0]) and at
    the other pixels outside `ignore` ([1]; foreground wins over ignore); edges increasing."""
    shapes = {np.shape(scoremap), np.shape(foreground)} | (set() if ignore is None else {np.shape(ignore)})
    if len(shapes) > 1:  # the kernel reads the masks by the map's pixel index
        raise ValueError(f"map and masks differ in shape: {sorted(shapes)}")
    values = np.ascontiguousarray(scoremap, dtype=np.float64).ravel()
    fg = np.ascontiguousarray(foreground, dtype=np.bool_).ravel()
    ig = np.zeros_like(fg) if ignore is None else np.ascontiguousarray(ignore, dtype=np.bool_).ravel()
    return _masked_histograms(values, fg, ig, np.ascontiguousarray(edges, dtype=np.float64))
