"""A seeded wsolevaluation-format fixture: metadata, 224x224 score maps (.npy) and masks (PNG).

Used by tests/localize/test_reference_agreement.py, benchmarks/bench_eval.py and tests/reference/run_wsolevaluation.py.
Map values lie on the grid k / 1024 so that `uint8(map * 255)` is exact on every platform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 224


def _grid(m: np.ndarray) -> np.ndarray:
    """Min-max normalise and snap to multiples of 1/1024 (exact binary fractions)."""
    m = m - m.min()
    if m.max() > 0:
        m = m / m.max()
    return np.round(m * 1024) / 1024


def make_map(rng: np.random.Generator, kind: str) -> np.ndarray:
    """One (224, 224) float64 map in [0, 1] of the given kind."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    if kind == "zeros":
        return np.zeros((SIZE, SIZE))
    if kind == "constant":
        return np.full((SIZE, SIZE), 0.5)
    if kind == "blocky":  # a coarse grid repeated: few levels, many equal contour areas
        cells = int(rng.integers(3, 9))
        small = rng.integers(0, 6, size=(cells, cells)).astype(np.float64)
        reps = -(-SIZE // cells)
        return _grid(np.kron(small, np.ones((reps, reps)))[:SIZE, :SIZE])
    m = np.zeros((SIZE, SIZE))
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(-20, SIZE + 20, size=2)
        sx, sy = rng.uniform(8, 70, size=2)
        m += rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 / (2 * sx**2) + (yy - cy) ** 2 / (2 * sy**2)))
    if kind == "ring":  # a blob with a dip in the middle: holes in the level sets
        cx, cy = rng.uniform(60, 160, size=2)
        r = np.hypot(xx - cx, yy - cy)
        m += np.exp(-((r - 40) ** 2) / (2 * 10**2))
    if kind == "noisy":
        m += rng.uniform(0, 0.1, size=m.shape)
    return _grid(m)


KINDS = ["blob"] * 6 + ["noisy", "ring", "blocky"]


def _random_boxes(rng: np.random.Generator, w: int, h: int, m: np.ndarray) -> list[list[int]]:
    """One box around a level set of the map (scaled to the image, jittered), sometimes more at random."""
    boxes = []
    ys, xs = np.nonzero(m >= rng.uniform(0.15, 0.7) * max(m.max(), 1e-9))
    if len(xs) and rng.random() < 0.85:
        jx, jy = rng.integers(-6, 7, size=2)
        x0 = int(np.clip((xs.min() + jx) * w / SIZE, 0, w - 1))
        y0 = int(np.clip((ys.min() + jy) * h / SIZE, 0, h - 1))
        x1 = int(np.clip((xs.max() + 1 + jx) * w / SIZE, x0 + 1, w))
        y1 = int(np.clip((ys.max() + 1 + jy) * h / SIZE, y0 + 1, h))
        boxes.append([x0, y0, x1, y1])
        if rng.random() < 0.7:
            return boxes
    for _ in range(int(rng.integers(1, 4))):
        x0, x1 = sorted(rng.integers(0, w + 1, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, h + 1, size=2).tolist())
        if rng.random() < 0.2:  # touch the border
            x0, y1 = 0, h
        boxes.append([x0, y0, max(x1, x0 + 1) if x0 < w else w, max(y1, y0 + 1) if y0 < h else h])
    return boxes


def _box_maps(n: int, seed: int):
    """(kind, map, image size, GT boxes) per image of the box fixture, in order."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(60, 640, size=2))
        kind = "zeros" if i in (5, 150) else "constant" if i == 77 else KINDS[int(rng.integers(len(KINDS)))]
        m = make_map(rng, kind)
        yield kind, m, (w, h), _random_boxes(rng, w, h, m)


def kinds_of(n: int = 300, seed: int = 0) -> list[str]:
    """The map kind of each image of `make_box_fixture(n, seed)`."""
    return [kind for kind, *_ in _box_maps(n, seed)]


def make_box_fixture(root: Path, n: int = 300, seed: int = 0) -> Path:
    """root/meta (wsol metadata with boxes) and root/maps/<image_id>.npy; returns the metadata folder."""
    meta, maps = root / "meta", root / "maps"
    meta.mkdir(parents=True, exist_ok=True)
    ids, labels, sizes, locs = [], [], [], []
    for i, (_kind, m, (w, h), boxes) in enumerate(_box_maps(n, seed)):
        image_id = f"c{i % 7}/img_{i:04d}.jpg"
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", m)
        ids.append(image_id)
        labels.append(f"{image_id},{i % 7}")
        sizes.append(f"{image_id},{w},{h}")
        locs += [f"{image_id},{b[0]},{b[1]},{b[2]},{b[3]}" for b in boxes]
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes), ("localization", locs)):
        (meta / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return meta


def make_mask_fixture(root: Path, n: int = 200, seed: int = 1) -> Path:
    """root/meta (wsol metadata with masks), root/masks/*.png and root/maps/*.npy; returns the metadata folder."""
    rng = np.random.default_rng(seed)
    meta, maps, masks = root / "meta", root / "maps", root / "masks"
    for d in (meta, maps, masks):
        d.mkdir(parents=True, exist_ok=True)
    ids, labels, locs = [], [], []
    for i in range(n):
        image_id = f"test/img_{i:04d}.jpg"
        w, h = (int(v) for v in rng.integers(60, 500, size=2))
        yy, xx = np.mgrid[:h, :w]
        names = []
        union = np.zeros((h, w), bool)
        for k in range(int(rng.integers(1, 3))):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            ax, ay = rng.uniform(5, w / 2), rng.uniform(5, h / 2)
            inst = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1
            union |= inst
            names.append(f"img_{i:04d}_m{k}.png")
            Image.fromarray(inst.astype(np.uint8) * 255).save(masks / names[-1])
        ignore = np.zeros((h, w), bool)
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        ignore[y0 : y0 + h // 3, x0 : x0 + w // 3] = True
        Image.fromarray(ignore.astype(np.uint8) * 255).save(masks / f"img_{i:04d}_ignore.png")
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        m = make_map(rng, KINDS[int(rng.integers(len(KINDS)))])
        np.save(maps / f"{image_id}.npy", m)
        ids.append(image_id)
        labels.append(f"{image_id},0")
        locs.append(f"{image_id},{names[0]},img_{i:04d}_ignore.png")
        locs += [f"{image_id},{name}," for name in names[1:]]
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("localization", locs)):
        (meta / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return meta
