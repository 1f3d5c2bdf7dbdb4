"""Faithfulness of maps: does the model rely on the pixels a map highlights?

Per-image scores, every perturbed input of every map batched through the model (several maps per forward pass):

* deletion / insertion (Petsiuk et al., RISE, BMVC 2018): pixels replaced by a baseline (deletion) or restored
  onto it (insertion) in the order of the map, the target score after each of `steps` equal steps, and the area
  under that curve over the actual fraction of pixels changed (trapezoid rule, as torchcam 0.5.0);
* average drop / increase in confidence (Chattopadhyay et al., Grad-CAM++, WACV 2018): the input multiplied by the
  [0, 1] map; drop = max(0, Y - O) / Y (relative, clipped), increase = O > Y; pytorch-grad-cam's absolute drop
  max(0, Y - O) as `absolute_drop`;
* ROAD (Rong et al., ICML 2022): a fraction of the pixels, most- (MoRF) or least-relevant first (LeRF), replaced
  by noisy linear imputation (each removed pixel the weighted mean of its 8 neighbours, solved jointly, plus
  N(0, 0.01^2) noise), at 10%, 20%, ... 90%;
* the pointing game (Zhang et al., ECCV 2016): a hit when the map's maximum lies within 15 px of the object.

Conventions and the differences from the peers: docs/evaluation.md ("Faithfulness").
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camloc.errors import InputError

METRICS = ("deletion", "insertion", "average-drop", "increase", "road", "pointing-game")
PERTURBATION_METRICS = METRICS[:5]  # those that need a model
BASELINES = ("rise", "blur", "mean", "zero")
SCORES = ("softmax", "logit")
TARGETS = ("predicted", "true")
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0  # RISE's insertion baseline (gkern(klen=11, nsig=5))
# noisy linear imputation: weights of the 8 neighbours (Rong et al.'s reference; 1/6 edge, 1/12 diagonal)
NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))


@dataclass(frozen=True)
class FaithfulnessSettings:
    """What the faithfulness numbers depend on; written into the report's protocol.

    baseline: what deletion / insertion put in place of pixels: "rise" (default: black for deletion, the blurred
    image for insertion, as RISE), or one of "blur", "mean" (the normalisation mean colour, i.e. a zero input
    tensor: torchcam's default), "zero" (black pixels) for both. score: "softmax" probability (RISE, Grad-CAM++)
    or "logit" of the target class. target: the map's class is the model's top-1 ("predicted") or the true class.
    """

    metrics: tuple[str, ...] = METRICS
    steps: int = 20
    baseline: str = "rise"
    score: str = "softmax"
    target: str = "predicted"
    road_fractions: tuple[float, ...] = ROAD_FRACTIONS
    road_noise: float = 0.01
    imputer_tol: float = 1e-4
    tolerance_px: float = 15.0
    difficult_area: float = 0.25
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics:
            raise InputError(f"unknown faithfulness metric {bad or '(none)'}; choose from {', '.join(METRICS)}")
        if self.baseline not in BASELINES:
            raise InputError(f"baseline must be one of {BASELINES}, got '{self.baseline}'")
        if self.score not in SCORES:
            raise InputError(f"score must be one of {SCORES}, got '{self.score}'")
        if self.target not in TARGETS:
            raise InputError(f"target must be one of {TARGETS}, got '{self.target}'")
        if self.steps < 1 or self.batch_size < 1:
            raise InputError(f"steps and batch size must be positive, got {self.steps} and {self.batch_size}")
        if not self.road_fractions or not all(0 < f < 1 for f in self.road_fractions):
            raise InputError(f"ROAD fractions must be in (0, 1), got {self.road_fractions}")

    @property
    def needs_model(self) -> bool:
        return any(m in PERTURBATION_METRICS for m in self.metrics)

    def baselines(self) -> tuple[str, str]:
        """(deletion's, insertion's) baseline."""
        return ("zero", "blur") if self.baseline == "rise" else (self.baseline, self.baseline)


def parse_metrics(text: str) -> tuple[str, ...]:
    """'deletion,road' -> ('deletion', 'road'); 'all' -> every metric; unknown names -> InputError."""
    names = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    if names == ("all",):
        return METRICS
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        raise InputError(f"--faithfulness: unknown metric {bad or '(none)'}; choose from {', '.join(METRICS)} or all")
    return names


# ------------------------------------------------------------------------------------------ scoring


def target_scores(model: nn.Module, x: Tensor, targets: Tensor, score: str = "softmax") -> tuple[Tensor, Tensor]:
    """The target class's score of each input and whether it is the top-1 class.

    x: (n, 3, H, W) model input; targets: (n,). Returns (scores (n,) float32 on the CPU, correct (n,) bool).
    """
    from camloc.methods.base import input_layout

    with torch.inference_mode():
        logits = model(input_layout(x)).float()
    t = targets.to(logits.device).long()[:, None]
    values = logits.softmax(dim=1) if score == "softmax" else logits
    return values.gather(1, t)[:, 0].cpu(), (logits.argmax(dim=1) == t[:, 0]).cpu()


def _run_jobs(
    model: nn.Module,
    n_jobs: int,
    build: Callable[[int, int], tuple[Tensor, Tensor]],
    score: str,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Score `n_jobs` perturbed inputs, `batch_size` per forward pass; build(start, stop) -> (inputs, targets)."""
    scores, correct = torch.empty(n_jobs), torch.empty(n_jobs, dtype=torch.bool)
    for start in range(0, n_jobs, batch_size):
        stop = min(start + batch_size, n_jobs)
        xs, ts = build(start, stop)
        scores[start:stop], correct[start:stop] = target_scores(model, xs, ts, score)
    return scores, correct


# ----------------------------------------------------------------------------------- perturbations


def baseline_image(x: Tensor, kind: str, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """The image pixels are replaced with, in the model's normalised input space. x: (B, 3, H, W).

    "mean": zeros (the normalisation mean colour); "zero": black pixels ((0 - mean) / std); "blur": a Gaussian
    blur (kernel 11, sigma 5, reflected borders) of x."""
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "zero":
        m = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
        s = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
        return (-m / s).expand_as(x).clone()
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(x, [BLUR_KERNEL, BLUR_KERNEL], [BLUR_SIGMA, BLUR_SIGMA])
    raise InputError(f"unknown baseline '{kind}'; choose from {', '.join(BASELINES[1:])}")


def step_counts(n_pixels: int, steps: int) -> list[int]:
    """Pixels changed at each point of a deletion / insertion curve: 0, s, 2s, ... and n_pixels, s = ceil(n / steps)
    (torchcam's points; the last step may be shorter, which is why the AUC uses the actual fractions)."""
    step = -(-n_pixels // steps)
    return [*range(0, n_pixels, step), n_pixels]


def pixel_ranks(maps: Tensor) -> Tensor:
    """(B, H, W) maps -> (B, H*W) rank of each pixel, 0 = highest value; ties keep raster order (stable sort)."""
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    return torch.argsort(order, dim=1)


def removal_keep(maps: Tensor, fraction: float, most_relevant_first: bool) -> Tensor:
    """Pixels ROAD keeps when it removes `fraction` of them: (B, H, W) maps -> (B, H, W) bool.

    As pytorch-grad-cam's ROAD at percentile p = 100 (1 - fraction): kept = m < percentile_p(m) (MoRF) or
    1 - m < percentile_p(1 - m) (LeRF), percentiles with linear interpolation (numpy's and torch's default)."""
    m = maps.double() if most_relevant_first else 1 - maps.double()
    q = torch.quantile(m.flatten(1), 1 - fraction, dim=1)
    return m < q[:, None, None]


_NEIGHBOUR_KERNEL = np.array(NEIGHBOUR_WEIGHTS, dtype=np.float32)


def _neighbour_sum(v: Tensor) -> Tensor:
    """sum_n w_n v(p + n) over the 8 neighbours (1/6 edge, 1/12 diagonal), zero outside: (N, 1, H, W) -> same.
    On a CPU OpenCV's filter2D, plane by plane (several times faster than a one-channel conv2d); elsewhere conv2d."""
    if v.device.type != "cpu":
        return F.conv2d(v, torch.from_numpy(_NEIGHBOUR_KERNEL).to(v)[None, None], padding=1)
    src = v.detach().contiguous().numpy()
    out = np.empty_like(src)
    kernel = _NEIGHBOUR_KERNEL.astype(src.dtype)
    for i in range(src.shape[0]):
        cv2.filter2D(src[i, 0], -1, kernel, dst=out[i, 0], borderType=cv2.BORDER_CONSTANT)
    return torch.from_numpy(out)


class _Level:
    """One grid of the multigrid preconditioner: the operator (S - W) restricted to the missing pixels."""

    def __init__(self, missing: Tensor, diag: Tensor | None = None) -> None:
        self.missing = missing
        # in-image neighbours' weights (S), one plane shared by every job
        self.diag = _neighbour_sum(torch.ones_like(missing[:1])) if diag is None else diag
        self.inv_diag = missing / self.diag

    def apply(self, v: Tensor) -> Tensor:
        return (self.diag * v - _neighbour_sum(v)) * self.missing

    def select(self, rows: Tensor) -> _Level:
        """The same grid for a subset of the jobs (those still iterating)."""
        return _Level(self.missing[rows], self.diag)


_JACOBI_OMEGA, _SMOOTHING, _COARSEST = 0.8, 1, 8


def _restrict(r: Tensor) -> Tensor:
    """Adjoint of `_prolong` (full weighting x 4, kernel (1, 3, 3, 1) / 4 per axis, stride 2): fine (N, 1, H, W) ->
    coarse (N, 1, ceil(H/2), ceil(W/2)). Separable, by strided views (a one-channel conv2d is slow on a CPU)."""
    h, w = r.shape[-2:]
    r = F.pad(r, (0, w % 2, 0, h % 2))
    for dim in (-1, -2):
        pairs = r.unflatten(dim, (r.shape[dim] // 2, 2))
        e, o = pairs.select(dim, 0), pairs.select(dim, 1)  # r[2i], r[2i + 1]
        c = 3 * (e + o)
        n = e.shape[dim]
        c.narrow(dim, 0, n - 1).add_(e.narrow(dim, 1, n - 1))  # + r[2i + 2]
        c.narrow(dim, 1, n - 1).add_(o.narrow(dim, 0, n - 1))  # + r[2i - 1]
        r = c / 4
    return r


def _prolong(e: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear interpolation coarse -> fine (zero beyond the border), cropped to `size`: fine[2i] = (3 c[i] +
    c[i - 1]) / 4, fine[2i + 1] = (3 c[i] + c[i + 1]) / 4 along each axis."""
    for dim, keep in ((-2, size[0]), (-1, size[1])):
        n = e.shape[dim]
        lo, hi = 3 * e, 3 * e
        lo.narrow(dim, 1, n - 1).add_(e.narrow(dim, 0, n - 1))
        hi.narrow(dim, 0, n - 1).add_(e.narrow(dim, 1, n - 1))
        e = torch.stack([lo, hi], dim=dim if dim == -1 else -2).flatten(
            -2 if dim == -1 else -3, -1 if dim == -1 else -2
        )
        e = e.narrow(dim, 0, keep) / 4
    return e


def _v_cycle(levels: list[_Level], r: Tensor, depth: int = 0) -> Tensor:
    """One symmetric V-cycle (damped Jacobi, bilinear prolongation, its adjoint as restriction): an SPD
    approximation of A^-1 r, the preconditioner of `_solve_laplace`."""
    lv = levels[depth]
    last = depth == len(levels) - 1
    e = _JACOBI_OMEGA * lv.inv_diag * r
    for _ in range((4 * _SMOOTHING if last else _SMOOTHING) - 1):
        e = e + _JACOBI_OMEGA * lv.inv_diag * (r - lv.apply(e))
    if last:
        return e
    coarse = _v_cycle(levels, _restrict((r - lv.apply(e)) * lv.missing), depth + 1)
    e = e + _prolong(coarse, (r.shape[-2], r.shape[-1])) * lv.missing
    for _ in range(_SMOOTHING):
        e = e + _JACOBI_OMEGA * lv.inv_diag * (r - lv.apply(e))
    return e


def _solve_laplace(xs: Tensor, known: Tensor, tol: float, max_iter: int) -> Tensor:
    """Missing pixels (known == 0) = weighted mean of their in-image neighbours, all at once: conjugate gradients
    preconditioned by a geometric multigrid V-cycle, on the symmetric positive definite system of each (image,
    channel), batched. Each system stops on its own residual (`tol` of its right-hand side's norm) and leaves the
    batch, so a job's result does not depend on the others. xs, known: (N, 1, H, W)."""
    missing = 1 - known
    levels = [_Level(missing)]
    while min(levels[-1].missing.shape[-2:]) >= 2 * _COARSEST:
        levels.append(_Level(F.max_pool2d(levels[-1].missing, 2, ceil_mode=True)))
    b = _neighbour_sum(xs * known) * missing
    u = torch.zeros_like(xs)
    active = torch.arange(xs.shape[0], device=xs.device)
    r = b.clone()
    z = _v_cycle(levels, r)
    p = z.clone()
    rz = (r * z).sum(dim=(1, 2, 3), keepdim=True)
    goal = (tol**2) * (b * b).sum(dim=(1, 2, 3), keepdim=True).clamp(min=1e-30)
    for _ in range(max_iter):
        done = (r * r).sum(dim=(1, 2, 3), keepdim=True) <= goal
        if bool(done.all()):
            break
        if bool(done.any()):  # the converged systems leave the batch
            stay = ~done.flatten()
            active, r, p, rz, goal = active[stay], r[stay], p[stay], rz[stay], goal[stay]
            levels = [lv.select(stay) for lv in levels]
        lv = levels[0]
        ap = lv.apply(p)
        pap = (p * ap).sum(dim=(1, 2, 3), keepdim=True)
        alpha = torch.where(pap > 0, rz / pap.clamp(min=1e-30), torch.zeros_like(pap))
        u.index_add_(0, active, alpha * p)
        r = r - alpha * ap
        z = _v_cycle(levels, r)
        rz_new = (r * z).sum(dim=(1, 2, 3), keepdim=True)
        p = z + torch.where(rz > 0, rz_new / rz.clamp(min=1e-30), torch.zeros_like(rz)) * p
        rz = rz_new
    return xs * known + u * missing


def noisy_linear_impute(
    x: Tensor,
    keep: Tensor,
    noise: float = 0.01,
    seeds: list[int] | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
) -> Tensor:
    """ROAD's noisy linear imputation, batched: x (B, C, H, W), keep (B, H, W) bool -> (B, C, H, W).

    Each removed pixel becomes the weighted mean of its in-image 8 neighbours (1/6 edge, 1/12 diagonal; weights of
    neighbours outside the image dropped), all removed pixels solved jointly, then N(0, noise^2) is added to them.
    The reference (Rong et al.; pytorch-grad-cam) solves this sparse system per image with SciPy's direct solver;
    here conjugate gradients preconditioned by a multigrid V-cycle run on the whole batch (CPU or GPU) until the
    residual is `tol` of the right-hand side's norm (1e-4: within about 2e-3 of the direct solve). seeds: one noise seed per image (reproducible whatever the batching)."""
    b, c, h, w = x.shape
    dtype = torch.float64 if tol < 1e-6 else torch.float32  # float32's round-off stops the residual near 1e-6
    xs = x.to(dtype).reshape(b * c, 1, h, w)
    known = keep.to(dtype)[:, None].repeat_interleave(c, dim=0)
    out = _solve_laplace(xs, known, tol, max_iter).reshape(b, c, h, w).to(x.dtype)
    if noise > 0:
        seeds = list(range(b)) if seeds is None else seeds
        eps = torch.stack([torch.randn((c, h, w), generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        out = out + (noise * eps).to(out) * (~keep)[:, None].to(out)
    return out


# ------------------------------------------------------------------------------------ the metrics


def faithfulness_scores(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    targets: Tensor,
    settings: FaithfulnessSettings = FaithfulnessSettings(),
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Tensor]:
    """Per-image faithfulness of maps, every perturbation batched (`settings.batch_size` inputs per pass, taken
    across all the images of the call).

    x: (B, 3, H, W) model input (normalised); maps: (B, H, W) in [0, 1] (min-max normalised), at the input's size;
    targets: (B,) class of each map. mean / std: the input normalisation (default: the model's, `info_of`); seeds:
    one ROAD noise seed per image. Returns CPU tensors: "score" (B,) and "correct" (B,) bool (top-1 = target); "deletion", "insertion" (B,) AUCs with
    "deletion_curve", "insertion_curve" (B, S+1) at "fractions" (S+1,); "drop", "absolute_drop" (B,),
    "increase" (B,) bool; "road_morf", "road_lerf" (B, F) scores and "road_morf_correct", "road_lerf_correct"
    (B, F) bool at `settings.road_fractions`. Only the metrics in `settings.metrics` are computed.
    """
    from camloc.models.adapters import eval_mode

    if x.dim() != 4 or maps.shape != (x.shape[0], *x.shape[-2:]):
        raise InputError(
            f"maps of shape {tuple(maps.shape)} for inputs {tuple(x.shape)}: expected (B, H, W) at x's size"
        )
    if mean is None or std is None:
        from camloc.models.zoo import info_of

        pre = info_of(model).preprocess
        mean, std = pre.mean, pre.std
    s = settings
    n = x.shape[0]
    targets = targets.reshape(-1).long().to(x.device)
    maps = maps.to(device=x.device, dtype=torch.float32)
    out: dict[str, Tensor] = {}
    wanted = set(s.metrics)
    with eval_mode(model):
        out["score"], out["correct"] = target_scores(model, x, targets, s.score)
        if wanted & {"deletion", "insertion"}:
            out.update(_deletion_insertion(model, x, maps, targets, s, mean, std, out["score"]))
        if wanted & {"average-drop", "increase"}:
            masked, _ = _run_jobs(
                model, n, lambda a, b: (x[a:b] * maps[a:b, None].to(x.dtype), targets[a:b]), s.score, s.batch_size
            )
            y = out["score"]
            out["drop"] = (y - masked).clamp(min=0) / y
            out["absolute_drop"] = (y - masked).clamp(min=0)
            out["increase"] = masked > y
        if "road" in wanted:
            out.update(_road(model, x, maps, targets, s, seeds))
    return out


def _deletion_insertion(model, x, maps, targets, s, mean, std, original) -> dict[str, Tensor]:
    n, _, h, w = x.shape
    counts = step_counts(h * w, s.steps)
    fractions = torch.tensor(counts, dtype=torch.float32) / (h * w)
    ranks = pixel_ranks(maps)
    kinds = [k for k in ("deletion", "insertion") if k in s.metrics]
    bases = dict(zip(("deletion", "insertion"), s.baselines(), strict=True))
    base = {k: baseline_image(x, bases[k], mean, std) for k in kinds}
    # jobs: deletion's points 1..S (point 0 is the input), insertion's points 0..S-1 (point S is the input)
    jobs = [
        (kind, i, p)
        for i in range(n)
        for kind in kinds
        for p in (range(1, len(counts)) if kind == "deletion" else range(len(counts) - 1))
    ]

    def build(a: int, b: int) -> tuple[Tensor, Tensor]:
        chunk = jobs[a:b]
        idx = torch.tensor([j[1] for j in chunk], device=x.device)
        count = torch.tensor([counts[j[2]] for j in chunk], device=x.device)
        changed = (ranks[idx] < count[:, None]).reshape(-1, 1, h, w)
        is_del = torch.tensor([j[0] == "deletion" for j in chunk], device=x.device)[:, None, None, None]
        b_img = torch.stack([base[j[0]][j[1]] for j in chunk])
        use_x = torch.where(is_del, ~changed, changed)
        return torch.where(use_x, x[idx], b_img), targets[idx]

    scores, _ = _run_jobs(model, len(jobs), build, s.score, s.batch_size)
    out: dict[str, Tensor] = {"fractions": fractions}
    curves = {k: torch.empty(n, len(counts)) for k in kinds}
    for (kind, i, p), v in zip(jobs, scores, strict=True):
        curves[kind][i, p] = v
    if "deletion" in curves:
        curves["deletion"][:, 0] = original
    if "insertion" in curves:
        curves["insertion"][:, -1] = original
    for k, curve in curves.items():
        out[k + "_curve"] = curve
        out[k] = torch.trapezoid(curve, fractions, dim=1)
    return out


def _road(model, x, maps, targets, s, seeds) -> dict[str, Tensor]:
    n = x.shape[0]
    seeds = list(range(n)) if seeds is None else list(seeds)
    jobs = [(i, f, morf) for i in range(n) for f in range(len(s.road_fractions)) for morf in (True, False)]
    keep = {
        (f, morf): removal_keep(maps, frac, morf) for f, frac in enumerate(s.road_fractions) for morf in (True, False)
    }

    def build(a: int, b: int) -> tuple[Tensor, Tensor]:
        chunk = jobs[a:b]
        idx = torch.tensor([j[0] for j in chunk], device=x.device)
        kept = torch.stack([keep[j[1], j[2]][j[0]] for j in chunk])
        job_seeds = [_job_seed(seeds[i], f, morf) for i, f, morf in chunk]
        return noisy_linear_impute(x[idx], kept, s.road_noise, job_seeds, s.imputer_tol), targets[idx]

    scores, correct = _run_jobs(model, len(jobs), build, s.score, s.batch_size)
    shape = (n, len(s.road_fractions), 2)
    scores, correct = scores.reshape(shape), correct.reshape(shape)
    return {
        "road_morf": scores[..., 0],
        "road_lerf": scores[..., 1],
        "road_morf_correct": correct[..., 0],
        "road_lerf_correct": correct[..., 1],
    }


def _job_seed(seed: int, fraction_index: int, morf: bool) -> int:
    return (int(seed) * 1009 + fraction_index * 2 + int(morf)) % (2**63)


def image_seed(image_id: str, seed: int = 0) -> int:
    """A stable per-image noise seed (the same in every process and batch)."""
    return zlib.crc32(f"{seed}:{image_id}".encode())


# ------------------------------------------------------------------------------------ pointing game


def map_peak(heatmap: np.ndarray) -> tuple[int, int] | None:
    """(x, y) of the map's maximum (first in raster order); None for a map without a finite maximum."""
    arr = np.asarray(heatmap, dtype=np.float64)
    if not np.isfinite(arr).any():
        return None
    idx = int(np.nanargmax(np.where(np.isfinite(arr), arr, -np.inf)))
    return idx % arr.shape[1], idx // arr.shape[1]


def pointing_hit(
    heatmap: np.ndarray,
    boxes: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    tolerance: float = 15.0,
) -> bool:
    """Zhang et al.'s pointing game for one map (H, W) at the image's size: True when its maximum is within
    `tolerance` pixels (Euclidean, pixel centres) of the object: of any GT box (n, 4) x0, y0, x1, y1 exclusive,
    or of a foreground mask (H, W) bool when given (masks take precedence)."""
    peak = map_peak(heatmap)
    if peak is None:
        return False
    px, py = peak
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != np.shape(heatmap):
            raise InputError(f"mask of shape {mask.shape} for a map of shape {np.shape(heatmap)}")
        if not mask.any():
            return False
        dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return bool(dist[py, px] <= tolerance)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(b):
        return False
    dx = np.maximum.reduce([b[:, 0] - px, np.zeros(len(b)), px - (b[:, 2] - 1)])
    dy = np.maximum.reduce([b[:, 1] - py, np.zeros(len(b)), py - (b[:, 3] - 1)])
    return bool((np.hypot(dx, dy) <= tolerance).any())


def object_fraction(size: tuple[int, int], boxes: np.ndarray | None = None, mask: np.ndarray | None = None) -> float:
    """Fraction of the image (size = (width, height)) the object covers: the mask, else the union of the boxes."""
    w, h = size
    if mask is not None:
        return float(np.asarray(mask, dtype=bool).mean())
    cover = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.int64).reshape(-1, 4):
        cover[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return float(cover.mean())


# ------------------------------------------------------------------------------------ accumulation


class FaithfulnessAccumulator:
    """Sums over images (float64, mergeable across processes by adding `sums()` vectors) -> the report section."""

    def __init__(self, settings: FaithfulnessSettings) -> None:
        self.settings = settings
        self.n_fractions = len(settings.road_fractions)
        self.names = self._names()
        self.values = np.zeros(len(self.names), dtype=np.float64)

    def _names(self) -> list[str]:
        f = self.n_fractions
        names = ["n_scored", "score", "correct", "deletion", "insertion", "drop", "absolute_drop", "increase"]
        names += [f"road_{o}_{k}_{i}" for o in ("morf", "lerf") for k in ("score", "correct") for i in range(f)]
        names += ["pointing_n", "pointing_hits", "pointing_difficult_n", "pointing_difficult_hits"]
        return names

    def _add(self, name: str, value: float) -> None:
        self.values[self.names.index(name)] += value

    def add_scores(self, scores: dict[str, Tensor]) -> None:
        """Add the output of `faithfulness_scores` for B images: its (B,) and (B, F) tensors, summed over images."""
        self._add("n_scored", len(scores["score"]))
        self._add("score", float(scores["score"].double().sum()))
        self._add("correct", float(scores["correct"].sum()))
        for k in ("deletion", "insertion", "drop", "absolute_drop", "increase"):
            if k in scores:
                self._add(k, float(scores[k].double().sum()))
        for o in ("morf", "lerf"):
            if f"road_{o}" in scores:
                for i in range(self.n_fractions):
                    self._add(f"road_{o}_score_{i}", float(scores[f"road_{o}"][:, i].double().sum()))
                    self._add(f"road_{o}_correct_{i}", float(scores[f"road_{o}_correct"][:, i].sum()))

    def add_pointing(self, hit: bool, difficult: bool) -> None:
        """One image's pointing game: a hit or not, and whether the object is small ("difficult")."""
        self._add("pointing_n", 1)
        self._add("pointing_hits", float(hit))
        if difficult:
            self._add("pointing_difficult_n", 1)
            self._add("pointing_difficult_hits", float(hit))

    def sums(self) -> np.ndarray:
        """Every sum as one (12 + 4 F,) float64 vector, F = len(road_fractions) (add two to merge)."""
        return self.values.copy()

    def set_sums(self, vector: np.ndarray) -> None:
        """Replace the sums by a (12 + 4 F,) `sums()` vector (after an all-reduce across processes)."""
        self.values = np.asarray(vector, dtype=np.float64).copy()

    def report(self) -> dict:
        """Means over images; percentages (0-100) for average drop, increase, accuracies and the pointing game."""
        v = dict(zip(self.names, self.values.tolist(), strict=True))
        s = self.settings
        rep: dict = {}
        n = v["n_scored"]
        if n:
            rep["n_scored"] = int(n)
            rep[f"mean_{s.score}"] = v["score"] / n
            rep["top1_is_target"] = 100 * v["correct"] / n
            if "deletion" in s.metrics:
                rep["deletion_auc"] = v["deletion"] / n
            if "insertion" in s.metrics:
                rep["insertion_auc"] = v["insertion"] / n
            if "average-drop" in s.metrics:
                rep["average_drop"] = 100 * v["drop"] / n
                rep["absolute_drop_pytorch_grad_cam"] = v["absolute_drop"] / n
            if "increase" in s.metrics:
                rep["increase_in_confidence"] = 100 * v["increase"] / n
            if "road" in s.metrics:
                rf = s.road_fractions
                road = {
                    f"{o}_{k}": [
                        (100 if k == "accuracy" else 1)
                        * v[f"road_{o}_{'score' if k == 'score' else 'correct'}_{i}"]
                        / n
                        for i in range(len(rf))
                    ]
                    for o in ("morf", "lerf")
                    for k in ("score", "accuracy")
                }
                road["fractions"] = list(rf)
                morf, lerf = np.mean(road["morf_score"]), np.mean(road["lerf_score"])
                rep["road"] = {
                    "morf": float(morf),
                    "lerf": float(lerf),
                    "combined_pytorch_grad_cam": float((lerf - morf) / 2),
                    **road,
                }
        if v["pointing_n"]:
            rep["pointing_game"] = 100 * v["pointing_hits"] / v["pointing_n"]
            rep["pointing_n"] = int(v["pointing_n"])
            if v["pointing_difficult_n"]:
                rep["pointing_game_difficult"] = 100 * v["pointing_difficult_hits"] / v["pointing_difficult_n"]
            rep["pointing_difficult_n"] = int(v["pointing_difficult_n"])
        return rep
