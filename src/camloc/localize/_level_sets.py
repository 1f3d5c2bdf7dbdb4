"""Contour boxes of every threshold level of a uint8 map in one compiled pass (numba).

The wsolevaluation protocol binarises a map at ~100 levels (`u8 > level`) and needs, per level, the boxes of all
`findContours(RETR_TREE)` contours and the box of the largest one by `contourArea`. Calling OpenCV once per level
costs a full image scan per level; here the levels are nested sets, so one union-find pass over the pixels sorted
by value builds every level's components incrementally:

* outer borders = 8-connected foreground components: pixels are added from the highest value down, and after the
  pixels above a level are in, the live components are that level's (their boxes are the outer borders' boxes);
* hole borders = 4-connected background components that do not touch the image frame: background pixels are added
  from the lowest value up; a hole's border runs on the foreground pixels 4-adjacent to it, so its box is the
  hole's box grown by one pixel on each side;
* the largest contour is an outer border (see `camloc.localize._wsol_boxes`); its area is the shoelace area of the border
  traced exactly as OpenCV's `icvFetchContour` does (Suzuki & Abe 1985, 8-connected, counter-clockwise search),
  traced only for components whose bounding-box bound `2 (w - 1)(h - 1)` reaches the best exact area so far.
  A tie of the largest area between different boxes is reported, and the caller asks OpenCV for its order.

Boxes follow the reference: `[x, y, min(x + w, W - 1), min(y + h, H - 1)]` from `boundingRect`'s `x, y, w, h`.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

__all__ = ["best_iou_by_level", "level_contour_boxes", "uint8_levels"]

# OpenCV's chain directions as (dx, dy): 0 = right, then counter-clockwise on screen (y points down)
_DX = np.array([1, 1, 0, -1, -1, -1, 0, 1], dtype=np.int64)
_DY = np.array([0, -1, -1, -1, 0, 1, 1, 1], dtype=np.int64)

# the 8 neighbours of a pixel around the ring, as (dx, dy): NW, N, NE, E, SE, S, SW, W
_RING = ((-1, -1), (0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0))


def _ring_groups(connectivity: int) -> np.ndarray:
    """(256, 5) table: for each set of present ring neighbours (bit d = _RING[d]), the number of groups of the
    pixel's present neighbours that are already connected through the ring, then one ring index per group.
    A new pixel then needs one `find` per group instead of one per neighbour."""
    table = np.zeros((256, 5), dtype=np.int64)
    for bits in range(256):
        present = [d for d in range(8) if bits >> d & 1]
        group = {d: d for d in present}

        def root(d: int, group: dict[int, int] = group) -> int:
            while group[d] != d:
                d = group[d]
            return d

        for a in present:
            for b in present:
                (ax, ay), (bx, by) = _RING[a], _RING[b]
                touching = (
                    max(abs(ax - bx), abs(ay - by)) == 1 if connectivity == 8 else abs(ax - bx) + abs(ay - by) == 1
                )
                if touching:
                    group[root(a)] = root(b)
        neighbours = [d for d in present if connectivity == 8 or 0 in _RING[d]]
        reps: dict[int, int] = {}
        for d in neighbours:
            reps.setdefault(root(d), d)
        table[bits, 0] = len(reps)
        table[bits, 1 : 1 + len(reps)] = list(reps.values())
    return table


_GROUPS8 = _ring_groups(8)
_GROUPS4 = _ring_groups(4)


def _euler_steps() -> np.ndarray:
    """(256,) change of 4 * Euler number (8-connected foreground) when a pixel with the given present ring
    neighbours turns on, by Gray's bit quads (E = n(Q1) - n(Q3) - 2 n(QD) over the 2x2 quads): the number of
    holes is then components - Euler, known pixel by pixel for free."""

    def quad(a: int, b: int, c: int, d: int) -> int:  # a b / c d
        n = a + b + c + d
        return 1 if n == 1 else -1 if n == 3 else -2 if n == 2 and a == d else 0

    steps = np.zeros(256, dtype=np.int64)
    for bits in range(256):
        nw, n, ne, e, se, s, sw, w = ((bits >> d) & 1 for d in range(8))
        before = quad(nw, n, w, 0) + quad(n, ne, 0, e) + quad(0, e, s, se) + quad(w, 0, sw, s)
        after = quad(nw, n, w, 1) + quad(n, ne, 1, e) + quad(1, e, s, se) + quad(w, 1, sw, s)
        steps[bits] = after - before
    return steps


_EULER_STEP = _euler_steps()


@njit(cache=True, inline="always")
def _find(parent: np.ndarray, p: int) -> int:
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@njit(cache=True, nogil=True)
def _outer_area2(padded: np.ndarray, stride: int, level: int, start: int) -> int:
    """Twice the contourArea of the outer border of `padded > level` that starts at flat index `start` (the
    component's raster-first pixel), traced as OpenCV's icvFetchContour does; `padded` has a zero frame."""
    step = np.empty(8, dtype=np.int64)
    for s in range(8):
        step[s] = _DX[s] + _DY[s] * stride
    s = 4
    found = False
    for _ in range(8):  # first neighbour clockwise from the left
        s = (s - 1) & 7
        if padded[start + step[s]] > level:
            found = True
            break
    if not found:
        return 0  # a single pixel
    second = start + step[s]
    here = start
    x3, y3 = 0, 0  # coordinates relative to the start (the area does not depend on the origin)
    area2 = 0
    while True:
        for _ in range(8):
            s = (s + 1) & 7
            if padded[here + step[s]] > level:
                break
        nxt = here + step[s]
        x4, y4 = x3 + _DX[s], y3 + _DY[s]
        area2 += x3 * y4 - x4 * y3
        if nxt == start and here == second:
            break
        here, x3, y3 = nxt, x4, y4
        s = (s + 4) & 7
    return abs(area2)


@njit(cache=True, nogil=True)
def _push(buf: np.ndarray, n: int, a: int, b: int, c: int, d: int, e: int) -> np.ndarray:
    if n == buf.shape[0]:
        bigger = np.empty((2 * n, 5), dtype=np.int64)
        bigger[:n] = buf
        buf = bigger
    buf[n, 0], buf[n, 1], buf[n, 2], buf[n, 3], buf[n, 4] = a, b, c, d, e
    return buf


@njit(cache=True, nogil=True)
def _union(parent: np.ndarray, box: np.ndarray, first: np.ndarray, a: int, b: int) -> int:
    """Join roots a != b under the lower index (so index 0 stays a root); returns the root that goes away."""
    if a > b:
        a, b = b, a
    parent[b] = a
    box[a, 0] = min(box[a, 0], box[b, 0])
    box[a, 1] = min(box[a, 1], box[b, 1])
    box[a, 2] = max(box[a, 2], box[b, 2])
    box[a, 3] = max(box[a, 3], box[b, 3])
    first[a] = min(first[a], first[b])
    return b


@njit(cache=True, inline="always")
def _ring_bits(on: np.ndarray, p: int, stride: int) -> int:
    """Bit d set when ring neighbour d (`_RING` order) of padded pixel p is on."""
    return (
        on[p - stride - 1]
        | (on[p - stride] << 1)
        | (on[p - stride + 1] << 2)
        | (on[p + 1] << 3)
        | (on[p + stride + 1] << 4)
        | (on[p + stride] << 5)
        | (on[p + stride - 1] << 6)
        | (on[p - 1] << 7)
    )


@njit(cache=True, inline="always")
def _add_pixel(
    p: int,
    x: int,
    y: int,
    bits: int,
    ring: np.ndarray,
    groups: np.ndarray,
    parent: np.ndarray,
    box: np.ndarray,
    first: np.ndarray,
    live: np.ndarray,
    slot: np.ndarray,
    n_live: int,
) -> int:
    """Union-find step: pixel p (padded index, at x, y; `bits`: its present ring neighbours) joins the present
    neighbours' components, merging them, or starts a new live component; returns the new number of live roots."""
    n_groups = groups[bits, 0]
    if n_groups == 0:
        parent[p] = p
        box[p, 0], box[p, 1], box[p, 2], box[p, 3] = x, y, x, y
        first[p] = p
        live[n_live] = p
        slot[p] = n_live
        return n_live + 1
    root = _find(parent, parent[p + ring[groups[bits, 1]]])
    parent[p] = root
    box[root, 0] = min(box[root, 0], x)
    box[root, 1] = min(box[root, 1], y)
    box[root, 2] = max(box[root, 2], x)
    box[root, 3] = max(box[root, 3], y)
    first[root] = min(first[root], p)
    for g in range(2, n_groups + 1):
        r = _find(parent, parent[p + ring[groups[bits, g]]])
        if r == root:
            continue
        gone = _union(parent, box, first, root, r)
        root = r if gone == root else root
        last = live[n_live - 1]
        live[slot[gone]] = last
        slot[last] = slot[gone]
        n_live -= 1
    return n_live


@njit(cache=True, nogil=True)
def _level_boxes(u8: np.ndarray, levels: np.ndarray, work: np.ndarray, box: np.ndarray):
    """levels: (L,) increasing distinct ints; work (8, (H + 2) * (W + 2)) and box ((H + 2) * (W + 2), 4) int32
    scratch. Returns rows (N, 5) = (level index, x0, y0, x1, y1) of all contour boxes (a level without
    foreground has the single box [0, 0, 0, 0]), largest (L, 4) and tie (L,) bool."""
    h, w = u8.shape
    stride = w + 2
    n_pad = (h + 2) * stride
    n_pix = h * w
    n_lv = levels.shape[0]
    padded = np.zeros(n_pad, dtype=np.uint8)
    # pixels by value (counting sort, ascending), as padded flat indices with their (x, y)
    counts = np.zeros(257, dtype=np.int64)
    for y in range(h):
        for x in range(w):
            v = u8[y, x]
            padded[(y + 1) * stride + x + 1] = v
            counts[v + 1] += 1
    for v in range(256):
        counts[v + 1] += counts[v]
    order, xs, ys = work[5], work[6], work[7]
    fill = counts[:256].copy()
    for y in range(h):
        for x in range(w):
            v = u8[y, x]
            j = fill[v]
            order[j], xs[j], ys[j] = (y + 1) * stride + x + 1, x, y
            fill[v] += 1

    rows = np.empty((1024, 5), dtype=np.int64)
    n_rows = 0
    largest = np.zeros((n_lv, 4), dtype=np.int64)
    tie = np.zeros(n_lv, dtype=np.bool_)
    parent, first, live, slot, bounds = work[0], work[1], work[2], work[3], work[4]
    parent[:] = -1
    # box: x0, y0, x1, y1 (inclusive) of a root's component; first: its raster-first pixel (padded index);
    # live: the live roots, slot: each root's place in `live`
    ring = np.array([-stride - 1, -stride, -stride + 1, 1, stride + 1, stride, stride - 1, -1], dtype=np.int64)

    # --- outer borders: 8-connected foreground, from the highest value down (the frame is never foreground)
    on = np.zeros(n_pad, dtype=np.uint8)  # the pixels in so far (denser than `parent` for the ring tests)
    n_holes = np.zeros(n_lv, dtype=np.int64)
    euler4 = 0  # 4 * Euler number of the foreground so far
    n_live = 0
    k = n_pix  # pixels order[k:] are in
    for i in range(n_lv - 1, -1, -1):
        level = levels[i]
        stop = counts[level + 1]  # pixels order[stop:] have values > level
        while k > stop:
            k -= 1
            p = order[k]
            bits = _ring_bits(on, p, stride)
            on[p] = 1
            euler4 += _EULER_STEP[bits]
            n_live = _add_pixel(p, xs[k], ys[k], bits, ring, _GROUPS8, parent, box, first, live, slot, n_live)
        n_holes[i] = n_live - euler4 // 4  # components - Euler number
        if n_live == 0:  # no foreground: the reference's single box [0, 0, 0, 0]
            rows = _push(rows, n_rows, i, 0, 0, 0, 0)
            n_rows += 1
            continue
        best = -1
        for j in range(n_live):
            r = live[j]
            rows = _push(rows, n_rows, i, box[r, 0], box[r, 1], min(box[r, 2] + 1, w - 1), min(box[r, 3] + 1, h - 1))
            n_rows += 1
            bounds[j] = 2 * (box[r, 2] - box[r, 0]) * (box[r, 3] - box[r, 1])  # >= 2 * contourArea (< 2^31)
            if best < 0 or bounds[j] > bounds[best]:
                best = j
        r = live[best]
        largest[i, 0], largest[i, 1] = box[r, 0], box[r, 1]
        largest[i, 2], largest[i, 3] = min(box[r, 2] + 1, w - 1), min(box[r, 3] + 1, h - 1)
        if n_live == 1:
            continue
        best_area = -1
        for j in range(n_live):  # exact areas only where another component's bound can reach the best area
            if j != best and bounds[j] >= best_area:
                if best_area < 0:
                    best_area = _outer_area2(padded, stride, level, first[live[best]])
                    if bounds[j] < best_area:
                        continue
                r = live[j]
                area = _outer_area2(padded, stride, level, first[r])
                if area < best_area:
                    continue
                x0, y0, x1, y1 = box[r, 0], box[r, 1], min(box[r, 2] + 1, w - 1), min(box[r, 3] + 1, h - 1)
                if area > best_area:
                    best_area = area
                    largest[i, 0], largest[i, 1], largest[i, 2], largest[i, 3] = x0, y0, x1, y1
                    tie[i] = False
                elif not (x0 == largest[i, 0] and y0 == largest[i, 1] and x1 == largest[i, 2] and y1 == largest[i, 3]):
                    tie[i] = True

    # --- hole borders: 4-connected background, from the lowest value up; the frame is one outside component.
    # levels above the last one with a hole need no pass at all
    last_hole = -1
    for i in range(n_lv):
        if n_holes[i] > 0:
            last_hole = i
    parent[:] = -1
    on[:] = 0
    outside = 0
    for y in range(h + 2):
        for x in (0, stride - 1):
            parent[y * stride + x] = outside
            on[y * stride + x] = 1
    for x in range(stride):
        parent[x] = outside
        parent[(h + 1) * stride + x] = outside
        on[x] = 1
        on[(h + 1) * stride + x] = 1
    n_live = 0
    k = 0
    for i in range(last_hole + 1):
        level = levels[i]
        stop = counts[level + 1]  # pixels order[:stop] have values <= level
        while k < stop:
            p = order[k]
            bits = _ring_bits(on, p, stride)
            on[p] = 1
            n_live = _add_pixel(p, xs[k], ys[k], bits, ring, _GROUPS4, parent, box, first, live, slot, n_live)
            k += 1
        for j in range(n_live):
            r = live[j]
            rows = _push(
                rows, n_rows, i, box[r, 0] - 1, box[r, 1] - 1, min(box[r, 2] + 2, w - 1), min(box[r, 3] + 2, h - 1)
            )
            n_rows += 1
    return rows[:n_rows], largest, tie


@njit(cache=True, nogil=True)
def _uint8_levels(scoremap: np.ndarray, thresholds: np.ndarray):
    h, w = scoremap.shape
    u8 = np.empty((h, w), dtype=np.uint8)
    top = 0
    for y in range(h):
        for x in range(w):
            v = np.uint8(scoremap[y, x] * 255.0)  # truncation, as numpy's astype(uint8) on [0, 255]
            u8[y, x] = v
            top = max(top, int(v))
    used = np.zeros(256, dtype=np.bool_)
    raw = np.empty(thresholds.shape[0], dtype=np.int64)
    for k in range(thresholds.shape[0]):
        raw[k] = int(thresholds[k] * top)  # int() truncation, t >= 0
        used[raw[k]] = True
    index = np.cumsum(used) - 1
    distinct = np.flatnonzero(used).astype(np.int64)
    inverse = np.empty(thresholds.shape[0], dtype=np.int64)
    for k in range(thresholds.shape[0]):
        inverse[k] = index[raw[k]]
    return u8, distinct, inverse


def uint8_levels(scoremap: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's binarisation inputs in one pass: u8 = `(map * 255).astype(uint8)`, the distinct levels
    `int(t * u8.max())` (increasing) and each threshold's index among them. scoremap: (H, W) float in [0, 1]
    (checked by the caller: outside it the cast is undefined), thresholds: (T,) in [0, 1]."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if len(thresholds) and not (thresholds.min() >= 0 and thresholds.max() <= 1):
        raise ValueError("CAM thresholds must lie in [0, 1]")
    return _uint8_levels(
        np.ascontiguousarray(scoremap, dtype=np.float64), np.ascontiguousarray(thresholds, dtype=np.float64)
    )


_scratch = threading.local()


def _workspace(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-thread scratch arrays for one map shape (reused: fresh pages cost more than the pass itself)."""
    n_pad = (height + 2) * (width + 2)
    cached = getattr(_scratch, "arrays", None)
    if cached is None or cached[0].shape[1] != n_pad:
        cached = (np.empty((8, n_pad), dtype=np.int32), np.empty((n_pad, 4), dtype=np.int32))
        _scratch.arrays = cached
    return cached


def level_contour_boxes(u8: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contour boxes of `u8 > level` for each of the increasing distinct `levels`.

    Returns rows (N, 5) int64 `(level index, x0, y0, x1, y1)`, every contour of every level (outer and hole
    borders, in no particular order; a level without foreground has the single box [0, 0, 0, 0]), largest (L, 4)
    int64 (the box of the largest contour; zeros without foreground) and tie (L,) bool (levels where different
    boxes share the largest area: the reference's choice then depends on OpenCV's contour order).
    """
    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    work, box = _workspace(*u8.shape)
    return _level_boxes(u8, np.ascontiguousarray(levels, dtype=np.int64), work, box)


@njit(cache=True, nogil=True)
def _best_iou_by_level(rows: np.ndarray, n_levels: int, gt: np.ndarray) -> np.ndarray:
    best = np.full(n_levels, -1.0)
    for j in range(rows.shape[0]):
        i = rows[j, 0]
        area = (rows[j, 3] - rows[j, 1] + 1) * (rows[j, 4] - rows[j, 2] + 1)
        for g in range(gt.shape[0]):
            iw = max(0, min(rows[j, 3], gt[g, 2]) - max(rows[j, 1], gt[g, 0]) + 1)
            ih = max(0, min(rows[j, 4], gt[g, 3]) - max(rows[j, 2], gt[g, 1]) + 1)
            inter = iw * ih
            union = area + (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1) - inter
            iou = inter / union if union > 0 else 0.0
            best[i] = max(best[i], iou)
    return best


def best_iou_by_level(rows: np.ndarray, n_levels: int, gt: np.ndarray) -> np.ndarray:
    """(n_levels,) the best IoU (inclusive boxes, the +1 convention of `camloc.localize.metrics.wsol_iou`, same float
    operations) between any box of a level (`rows` as from `level_contour_boxes`) and any GT box; -1 without GT
    boxes."""
    return _best_iou_by_level(
        np.ascontiguousarray(rows, dtype=np.int64),
        int(n_levels),
        np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4),
    )
