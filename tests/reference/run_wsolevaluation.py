"""Run clovaai/wsolevaluation's own BoxEvaluator / MaskEvaluator on the seeded fixture (tests/fixture_wsol.py).

Nothing of the reference is kept in this repository. To reproduce the literals in tests/test_reference_agreement.py:

    git clone https://github.com/clovaai/wsolevaluation /tmp/wsolref        # commit 96f4b88 was used
    PYTHONPATH=src python tests/reference/run_wsolevaluation.py /tmp/wsolref /tmp/wsolfix [0.01 0.001]

The reference predates NumPy 1.24 (np.float) and imports `munch`; both are shimmed here, outside its code.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fixture_wsol import make_box_fixture, make_mask_fixture


def main(ref_dir: str, work: str, intervals: tuple[float, ...] = (0.01, 0.001)) -> None:
    np.float = float  # type: ignore[attr-defined]  # noqa: NPY001 - removed in NumPy 1.24; the reference still uses it
    np.int = int  # type: ignore[attr-defined]  # noqa: NPY001
    sys.modules.setdefault("munch", types.SimpleNamespace(Munch=_Meta))
    sys.path.insert(0, ref_dir)
    from evaluation import BoxEvaluator, MaskEvaluator, configure_metadata  # the reference's own code

    work_dir = Path(work)
    box_meta = make_box_fixture(work_dir / "boxes")
    mask_meta = make_mask_fixture(work_dir / "masks")
    out: dict = {}
    for interval in intervals:
        thresholds = list(np.arange(0, 1, interval))
        for multi in (False, True):
            ev = BoxEvaluator(
                metadata=configure_metadata(str(box_meta)),
                dataset_name="CUB",
                split="test",
                cam_threshold_list=thresholds,
                iou_threshold_list=[30, 50, 70],
                mask_root=None,
                multi_contour_eval=multi,
            )
            for image_id in ev.image_ids:
                ev.accumulate(np.load(work_dir / "boxes" / "maps" / f"{image_id}.npy"), image_id)
            name = f"box_{interval}_{'all' if multi else 'largest'}"
            out[name] = [float(v) for v in ev.compute()]
            # the whole accuracy curve, as hit counts summed over thresholds and weighted by threshold index
            out[name + "_curve"] = [
                [int(ev.num_correct[i].sum()), int((ev.num_correct[i] * np.arange(len(thresholds))).sum())]
                for i in (30, 50, 70)
            ]
        mev = MaskEvaluator(
            metadata=configure_metadata(str(mask_meta)),
            dataset_name="OpenImages",
            split="test",
            cam_threshold_list=thresholds,
            iou_threshold_list=[30, 50, 70],
            mask_root=str(work_dir / "masks" / "masks"),
            multi_contour_eval=False,
        )
        for image_id in mev.mask_paths:
            mev.accumulate(np.load(work_dir / "masks" / "maps" / f"{image_id}.npy"), image_id)
        out[f"pxap_{interval}"] = float(mev.compute())
    print(json.dumps(out, indent=1))


class _Meta(dict):
    """The reference reads metadata both as attributes and as items (a Munch); a dict with attributes."""

    def __init__(self, src) -> None:
        super().__init__(src if isinstance(src, dict) else vars(src))

    def __getattr__(self, key):
        return self[key]

    def __setattr__(self, key, value):
        self[key] = value


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *[tuple(float(v) for v in sys.argv[3:])] if len(sys.argv) > 3 else [])
