"""Datasets for localization evaluation: one module per format behind one interface (`camloc.data.base`).

`open_dataset("FORMAT:PATH", **opts)` resolves a spec; formats register themselves in `FORMATS`
(wsol, ilsvrc, cub, voc, coco, cluttered, folder; add one with `@register_format("name")`).
"""

from camloc.data import cluttered, coco, cub, folder, ilsvrc, voc, wsol  # noqa: F401  (register the formats)
from camloc.data.base import FORMATS, Dataset, Sample, open_dataset, register_format

__all__ = ["FORMATS", "Dataset", "Sample", "open_dataset", "register_format"]
