"""How far the original release's box generator (camloc.localize._release_boxes) is from the paper's rule (camloc.boxes).

    PYTHONPATH=src python benchmarks/compare_box_rules.py            # synthetic maps with GT boxes + examples/

Part 1: the seeded fixture of tests/fixture_wsol.py (300 maps, GT boxes): each map resized (bilinear) to its
image size, one box per rule (paper: 20% of the max of the normalised map, largest component; release: its first box),
IoU between the two boxes and GT-known localization (IoU >= 0.5) of each rule.
Part 2: the top-1 CAMs of the built-in model on the images in examples/ (no GT): IoU between the two rules' boxes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fixture_wsol import make_box_fixture  # noqa: E402

from camloc.boxes import box_from_map  # noqa: E402
from camloc.data import open_dataset  # noqa: E402
from camloc.localize._release_boxes import release_box  # noqa: E402
from camloc.localize.metrics import box_iou  # noqa: E402


def describe(name: str, ious: np.ndarray) -> None:
    print(
        f"{name}: n={len(ious)}  IoU(paper, release) mean {ious.mean():.3f}  median {np.median(ious):.3f}  "
        f"share >= 0.5: {100 * (ious >= 0.5).mean():.1f}%"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        meta = make_box_fixture(Path(tmp), n=300)
        ds = open_dataset(f"wsol:{meta}")
        ious, hit_paper, hit_release = [], [], []
        for s in ds:
            m = np.load(Path(tmp) / "maps" / f"{s.image_id}.npy").astype(np.float32)
            m = cv2.resize(m, s.size, interpolation=cv2.INTER_LINEAR)
            p, r = box_from_map(m, 0.2), release_box(m)
            ious.append(box_iou(p[None], r[None])[0, 0])
            hit_paper.append(box_iou(p[None], s.boxes).max() >= 0.5)
            hit_release.append(box_iou(r[None], s.boxes).max() >= 0.5)
    describe("synthetic fixture", np.array(ious))
    print(
        f"synthetic fixture: GT-known loc  paper {100 * np.mean(hit_paper):.1f}%  "
        f"release {100 * np.mean(hit_release):.1f}%"
    )

    import camloc

    model = camloc.load("default")
    paths = sorted(str(p) for p in (ROOT / "examples").glob("*.jpg"))
    res = camloc.explain(model, paths, top_k=1)
    ious = []
    for i in range(len(paths)):
        m = res.maps[i][0].float().cpu().numpy()
        ious.append(box_iou(box_from_map(m, 0.2)[None], release_box(m)[None])[0, 0])
    describe("examples/ top-1 CAMs (default model)", np.array(ious))


if __name__ == "__main__":
    main()
