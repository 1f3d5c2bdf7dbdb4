"""Linear probes on a frozen GAP net: pooled features -> scikit-learn linear classifier -> a CAM-exact model.

The paper's second claim (Zhou et al. 2016, sec. 4): the globally average-pooled features of an ImageNet net
localize new classes too. A probe is the backbone with its classifier replaced by a linear layer trained, with the
backbone frozen, on the pooled features of the new classes. Its CAM for class c is sum_k w_ck f_k(x, y), so
`camloc explain` / `evaluate` treat it like any GAP net.

Features are exactly what the backbone pools when `explain` classifies: `image_to_tensor` at the model's native
size (shorter side, aspect kept), `forward_features`, mean over x and y. Hence the probe's logits on an image equal
the fitted classifier's `decision_function` on its cached features.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from camloc.errors import InputError
from camloc.explainer.runner import check_batch_size
from camloc.io import load_image, save_checkpoint
from camloc.models.adapters import eval_mode, get_adapter
from camloc.models.probe_net import backbone_recipe, replace_head
from camloc.models.zoo import info_of, load
from camloc.preprocess import image_to_tensor
from camloc.probe.auto import DEFAULT_AUTO, AutoSettings, choose, trial_indices
from camloc.probe.cells import (
    DEFAULT_CELLS,
    CellSettings,
    cross_validated_accuracy,
    fit_image_cells,
    held_out_predictions,
    image_folds,
    labelled_cells,
)
from camloc.probe.contrast import DEFAULT_CONTRAST, ContrastSettings, contrast_bank
from camloc.probe.features_cache import FeatureCache, model_key, source_id
from camloc.probe.span import backbone_classifier, fit_span

log = logging.getLogger("camloc")

Source = str | PathLike | Image.Image | np.ndarray
CLASSIFIERS = ("auto", "logreg", "svm", "span", "cells")
LOGREG_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
DEFAULT_CS: dict[str, tuple[float, ...]] = {
    "auto": LOGREG_CS,  # for its logreg; its cells take DEFAULT_CELLS.C
    "logreg": LOGREG_CS,
    "svm": (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    "span": (1e-2, 1e-1, 1.0, 10.0),
    "cells": (DEFAULT_CELLS.C,),  # one value: the cell fit has no boxes to choose C on
}


def _warn_skip(message: str) -> None:
    log.warning("skipped %s", message)


@dataclass
class ProbeSet:
    """Images and their classes: `sources[i]` (a path, PIL image or uint8 array) has class `labels[i]` of `classes`."""

    sources: list[Source]
    labels: list[int]
    classes: list[str]
    name: str = "data"


@dataclass
class LinearFit:
    """A linear classifier on raw pooled features: logits = features @ weight.T + bias.

    weight: (K, C) with K >= 2 (a binary classifier becomes two rows, -w/2 and +w/2, so that logit_1 - logit_0 is
    its decision function and the softmax is its logistic probability; "span" and "cells" fit K rows of their own).
    "cells" (`camloc.probe.cells`) takes one C; its `cv_accuracy` is cross-validated over images all the same.
    `classifier` is the one fitted ("auto" fits logreg or cells: `camloc.probe.auto`). `estimator` is the fitted
    scikit-learn pipeline or `camloc.probe.span.SpanModel` (never saved: its numbers live in `weight` and `bias`).
    """

    weight: np.ndarray
    bias: np.ndarray
    classifier: str
    C: float
    cv_accuracy: float
    folds: int
    estimator: Any = None
    settings: dict[str, float | int | str] = field(default_factory=dict)  # what else it chose (cells: contrast)


def open_probe_set(spec: str | PathLike, split: str | None = "train", **opts: Any) -> ProbeSet:
    """Training images from a dataset spec: `FORMAT:PATH` (any format of `camloc.data.open_dataset`) or a plain
    folder path (ImageFolder layout). `split` goes to formats that have splits (train by default)."""
    from camloc.data import FORMATS, open_dataset
    from camloc.data.base import accepts_option

    text = str(spec)
    fmt = text.partition(":")[0]
    if fmt not in FORMATS or Path(text).exists():
        text = f"folder:{text}"
        fmt = "folder"
    if split is not None and accepts_option(fmt, "split"):
        opts["split"] = split
    return probe_set_from(open_dataset(text, **opts))


def probe_set_from(dataset: Any) -> ProbeSet:
    """A `ProbeSet` of any dataset whose samples have `.image` (path or array) and `.label`, and whose class names
    are `class_names` (camloc.data) or `classes` (Cluttered Fashion-MNIST, torchvision)."""
    classes = list(getattr(dataset, "class_names", None) or getattr(dataset, "classes", None) or [])
    samples = [dataset[i] for i in range(len(dataset))]
    name = str(getattr(dataset, "source", "") or getattr(dataset, "name", "") or "data")
    return ProbeSet([s.image for s in samples], [int(s.label) for s in samples], classes, name)


def as_pil(source: Source) -> Image.Image:
    """A path, PIL image or (H, W) / (H, W, 3) uint8 array as an RGB PIL image (files through `load_image`)."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] != 3):
            raise InputError(
                f"an image array must be (H, W) or (H, W, 3) uint8, got {source.dtype} {tuple(source.shape)}"
            )
        return Image.fromarray(source).convert("RGB")
    if source is None:
        raise InputError("a sample has no image (the dataset was opened without its image folder)")
    return load_image(source)


# --------------------------------------------------------------------------------------------- features


def extract_features(
    model: nn.Module,
    sources: Sequence[Source],
    *,
    batch_size: int = 32,
    cache: FeatureCache | None = None,
    progress: bool = False,
    on_skip: Callable[[str], None] = _warn_skip,
) -> tuple[np.ndarray, list[int]]:
    """GAP features (N', C) float32 of the images that could be read, and their indices into `sources`.

    Each image is preprocessed as `explain` does it (native size, aspect kept) and images of equal shape are batched
    (no padding: it would change the average). Unreadable images are reported through `on_skip` and left out.
    """
    check_batch_size(batch_size)  # 0 would read no image and blame the images
    adapter = get_adapter(model)
    pre = info_of(model).preprocess
    device = adapter.weight.device
    vectors: list[np.ndarray | None] = [None] * len(sources)
    with (
        tqdm(total=len(sources), desc="features", unit="img", disable=not progress, file=sys.stderr) as bar,
        eval_mode(model),
        torch.no_grad(),
    ):
        for start in range(0, len(sources), max(1, batch_size)):
            todo: list[tuple[int, str, torch.Tensor]] = []
            for i in range(start, min(start + batch_size, len(sources))):
                src = sources[i]
                if src is None:
                    on_skip(f"sample {i}: no image (the dataset was opened without its image folder)")
                    continue
                try:
                    ident = source_id(src)
                    cached = cache.get(ident) if cache is not None else None
                    if cached is not None:
                        vectors[i] = cached
                        continue
                    image = as_pil(src)
                except InputError as exc:
                    on_skip(str(exc))
                    continue
                except OSError as exc:
                    on_skip(f"{src}: {exc.strerror or exc}")
                    continue
                todo.append((i, ident, image_to_tensor(image, pre.input_size, pre)))
            by_shape: dict[tuple[int, ...], list[tuple[int, str, torch.Tensor]]] = {}
            for entry in todo:
                by_shape.setdefault(tuple(entry[2].shape), []).append(entry)
            for group in by_shape.values():
                x = torch.stack([t for _, _, t in group]).to(device=device, dtype=adapter.weight.dtype)
                pooled = adapter.head_input(adapter.features(x)).float().cpu().numpy()  # after a head norm
                for (i, ident, _), vec in zip(group, pooled, strict=True):
                    vectors[i] = vec
                    if cache is not None:
                        cache.put(ident, vec)
            bar.update(min(start + batch_size, len(sources)) - start)
    kept = [i for i, v in enumerate(vectors) if v is not None]
    dim = int(adapter.weight.shape[1])
    feats = (
        np.stack([v for v in vectors if v is not None]).astype(np.float32) if kept else np.zeros((0, dim), np.float32)
    )
    return feats, kept


def feature_cache_for(model: nn.Module, architecture: str, cache_dir: str | PathLike | None) -> FeatureCache | None:
    """The cache of this (model, preprocessing) pair under `cache_dir` (None: no cache)."""
    if cache_dir is None:
        return None
    return FeatureCache(cache_dir, model_key(architecture, model, info_of(model).preprocess))


# ---------------------------------------------------------------------------------------------- fitting


def check_labels(labels: Sequence[int], classes: Sequence[str], where: str, readable: bool = False) -> None:
    """Every class needs two examples at least (one to fit, one to validate); say which one lacks them.
    `readable`: the labels are those of the images that could be decoded (said so in the message)."""
    if len(classes) < 2:
        found = f"1 class ('{classes[0]}')" if classes else "no class"
        raise InputError(f"{where}: found {found}; a probe needs at least two classes (one sub-folder each)")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    for name, n in zip(classes, counts, strict=True):
        if n < 2:
            what = ("no" if n == 0 else "only 1") + (" readable image" if readable else " image")
            raise InputError(
                f"{where}: class '{name}' has {what}; each class needs at least 2 (cross-validation picks C)"
            )


def fit_linear(
    features: np.ndarray,
    labels: Sequence[int],
    classifier: str = "logreg",
    Cs: Sequence[float] | None = None,
    folds: int = 5,
    seed: int = 0,
    backbone_classifier: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> LinearFit:
    """Standardise features, fit logistic regression (or a linear SVM), C chosen by stratified k-fold
    cross-validation on accuracy, then fold the standardisation into the weights (exact, so CAMs stay exact).
    classifier "span" (`camloc.probe.span`) needs `backbone_classifier`: the backbone's own weight (J, C) and bias
    (J,) or None."""
    try:
        from sklearn.exceptions import ConvergenceWarning
    except ImportError:
        raise InputError("probes need scikit-learn: pip install 'camloc[probe]'") from None
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if classifier not in ("logreg", "svm", "span"):
        raise InputError(f"fit_linear fits logreg, svm or span, not '{classifier}'")
    y = np.asarray(labels, dtype=np.int64)
    Cs = tuple(float(c) for c in (Cs or DEFAULT_CS[classifier]))
    if not Cs or min(Cs) <= 0:
        raise InputError("C values must be positive")
    n_splits = int(min(folds, np.bincount(y).min()))
    if n_splits < 2:
        raise InputError("every class needs at least 2 images to choose C by cross-validation")
    if classifier == "span":
        if backbone_classifier is None:
            raise InputError("the span classifier needs the backbone's own classifier (weight and bias)")
        span, best_c, accuracy = fit_span(features, y, *backbone_classifier, Cs, n_splits, seed)
        return LinearFit(
            span.weight.astype(np.float32), span.bias.astype(np.float32), classifier, best_c, accuracy, n_splits, span
        )
    clf = (
        LogisticRegression(max_iter=2000)
        if classifier == "logreg"
        else LinearSVC(max_iter=20000, dual="auto", random_state=seed)
    )
    pipe = Pipeline([("scale", StandardScaler()), ("clf", clf)])
    search = GridSearchCV(
        pipe,
        {"clf__C": list(Cs)},
        cv=StratifiedKFold(n_splits, shuffle=True, random_state=seed),
        scoring="accuracy",
        refit=True,
        n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(np.asarray(features, dtype=np.float64), y)
    best = search.best_estimator_
    scaler, fitted = best.named_steps["scale"], best.named_steps["clf"]
    weight = fitted.coef_ / scaler.scale_[None, :]
    bias = fitted.intercept_ - weight @ scaler.mean_
    if weight.shape[0] == 1:  # binary: decision = w.x + b for class 1 against class 0
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    return LinearFit(
        weight.astype(np.float32),
        bias.astype(np.float32),
        classifier,
        float(search.best_params_["clf__C"]),
        float(search.best_score_),
        n_splits,
        best,
    )


def cells_c(Cs: Sequence[float] | None, settings: CellSettings = DEFAULT_CELLS) -> float:
    """The cells classifier's one C: `Cs` (a single value) or the settings' default."""
    if Cs is not None and len(Cs) != 1:
        raise InputError("the cells classifier takes one C value (it has no boxes to choose C on)")
    c = float(Cs[0]) if Cs else settings.C
    if c <= 0:
        raise InputError("C values must be positive")
    return c


def cells_fit(
    per_image: Sequence[tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    c: float,
    accuracy: float,
    folds: int,
    contrast: ContrastSettings,
) -> LinearFit:
    """The cells probe's rows (K, C) and bias (K,) on the labelled cells (n, C) of every training image, with its
    cross-validated accuracy."""
    weight, bias = fit_image_cells(per_image, n_classes, c)
    return LinearFit(
        weight.astype(np.float32),
        bias.astype(np.float32),
        "cells",
        c,
        accuracy,
        folds,
        settings={"contrast_threshold": contrast.threshold},
    )


def fit_cells_probe(
    model: nn.Module,
    feats: np.ndarray,
    sources: Sequence[Source],
    labels: Sequence[int],
    n_classes: int,
    Cs: Sequence[float] | None,
    folds: int,
    settings: CellSettings = DEFAULT_CELLS,
    contrast: ContrastSettings = DEFAULT_CONTRAST,
    progress: bool = False,
) -> LinearFit:
    """The "cells" classifier (`camloc.probe.cells`): the rows fitted on the cells of `sources`, labelled by their
    contrast boxes, with C = `Cs` (one value; default `DEFAULT_CELLS.C`); its accuracy cross-validated over
    images, each held-out image classified by its pooled features `feats` (N, C). `contrast`: the contrast boxes'
    settings (`camloc.probe.contrast`)."""
    c = cells_c(Cs, settings)
    per_image = labelled_cells(model, sources, labels, n_classes, settings, contrast, progress)
    accuracy, n_splits = cross_validated_accuracy(per_image, feats, labels, n_classes, c, folds, progress=progress)
    return cells_fit(per_image, n_classes, c, accuracy, n_splits, contrast)


def fit_auto(
    model: nn.Module,
    feats: np.ndarray,
    sources: Sequence[Source],
    labels: Sequence[int],
    n_classes: int,
    Cs: Sequence[float] | None,
    folds: int,
    contrast: ContrastSettings = DEFAULT_CONTRAST,
    auto: AutoSettings = DEFAULT_AUTO,
    progress: bool = False,
) -> LinearFit:
    """The default classifier "auto" (`camloc.probe.auto`) on pooled features `feats` (N, C): logreg (C from `Cs`
    by cross-validation) and cells (its default C) cross-validated on the same folds of the trial's images
    (`trial_indices`); cells unless it errs significantly more often. When the trial has every class, its
    contrast bank and labelled cells are reused if cells is chosen; otherwise (more classes than `trial_images` / 2)
    the trial runs on its classes alone and cells, if chosen, is fitted afresh. The fit's `settings` record the
    trial. Where the cells classifier cannot be fitted (an `InputError`, e.g. a class whose boxes hold no cell), it
    is logged and the logreg fit kept, recording why."""
    logreg = fit_linear(feats, labels, "logreg", Cs, folds)
    try:
        return trial_then_fit(model, logreg, feats, sources, labels, n_classes, folds, contrast, auto, progress)
    except InputError as exc:
        log.warning("auto: the cells classifier could not be fitted (%s); keeping logreg", exc)
        logreg.settings = {"requested": "auto", "auto_cells_error": str(exc)}
        return logreg


def trial_then_fit(
    model: nn.Module,
    logreg: LinearFit,
    feats: np.ndarray,
    sources: Sequence[Source],
    labels: Sequence[int],
    n_classes: int,
    folds: int,
    contrast: ContrastSettings,
    auto: AutoSettings,
    progress: bool,
) -> LinearFit:
    """`fit_auto` given its logreg fit: the trial on pooled features `feats` (N, C), then the fit it picks."""
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    y = np.asarray(labels, dtype=np.int64)
    trial = trial_indices(labels, auto)
    trial_classes = sorted(set(y[trial].tolist()))
    every_class = len(trial_classes) == n_classes
    y_trial = np.searchsorted(trial_classes, y[trial])  # 0..k-1 (unchanged when every class is in)
    splits = image_folds(y_trial.tolist(), folds, auto.seed)
    logreg_predicted = cross_val_predict(clone(logreg.estimator), feats[trial].astype(np.float64), y_trial, cv=splits)
    c = cells_c(None)
    if every_class:
        bank = contrast_bank(model, sources, labels, contrast, progress)
        trial_cells = labelled_cells(
            model, sources, labels, n_classes, DEFAULT_CELLS, contrast, progress, bank=bank, only=trial
        )
    else:
        trial_sources, trial_labels = [sources[i] for i in trial], y_trial.tolist()
        trial_cells = labelled_cells(
            model, trial_sources, trial_labels, len(trial_classes), DEFAULT_CELLS, contrast, progress
        )
    cells_predicted = held_out_predictions(trial_cells, feats[trial], len(trial_classes), c, splits, progress)
    choice = choose(y_trial, logreg_predicted, cells_predicted, auto.alpha)
    if choice.classifier == "logreg":
        logreg.settings = choice.settings()
        return logreg
    if not every_class:
        fit = fit_cells_probe(
            model, feats, sources, labels, n_classes, None, folds, contrast=contrast, progress=progress
        )
    else:
        per_image = dict(zip(trial, trial_cells, strict=True))
        rest = [i for i in range(len(y)) if i not in per_image]
        per_image.update(
            zip(
                rest,
                labelled_cells(
                    model, sources, labels, n_classes, DEFAULT_CELLS, contrast, progress, bank=bank, only=rest
                ),
                strict=True,
            )
        )
        every = [per_image[i] for i in range(len(y))]
        if rest:
            accuracy, n_splits = cross_validated_accuracy(every, feats, labels, n_classes, c, folds, progress=progress)
        else:  # the trial was every image: its folds were the full cross-validation
            accuracy, n_splits = choice.cells_right / choice.images, len(splits)
        fit = cells_fit(every, n_classes, c, accuracy, n_splits, contrast)
    fit.settings.update(choice.settings())
    return fit


def decision_logits(fit: LinearFit, features: np.ndarray) -> np.ndarray:
    """(N, K) logits of the fitted pipeline in the probe's layout (binary: [-d/2, d/2])."""
    d = fit.estimator.decision_function(np.asarray(features, dtype=np.float64))
    return np.stack([-d / 2, d / 2], axis=1) if d.ndim == 1 else d


# -------------------------------------------------------------------------------------------- the model


def attach_head(backbone: nn.Module, fit: LinearFit) -> nn.Module:
    """Replace the backbone's classifier (in place) by the fitted linear layer; returns the backbone."""
    model = replace_head(backbone, int(fit.weight.shape[0]))
    linear = get_adapter(model).linear
    weight, bias = cast(Tensor, linear.weight), cast(Tensor, linear.bias)
    with torch.no_grad():
        weight.copy_(torch.from_numpy(fit.weight).to(weight).reshape(weight.shape))
        bias.copy_(torch.from_numpy(fit.bias).to(bias))
    return model


@dataclass
class Probe:
    """A fitted probe: the model (backbone + new head, `camloc_info` set), the fit, and what it was fitted on."""

    model: nn.Module
    fit: LinearFit
    classes: list[str]
    backbone: str
    recipe: dict[str, Any]
    n_images: int
    n_skipped: int
    seconds: dict[str, float]

    def config(self) -> dict[str, Any]:
        """The checkpoint's config.json: architecture "probe" with the backbone recipe, labels, preprocessing, and
        what the fit was (classifier, C, cross-validated accuracy, images, seconds)."""
        info = info_of(self.model)
        return {
            "architecture": "probe",
            "arch_kwargs": {"backbone": self.recipe, "num_classes": len(self.classes)},
            "labels": list(self.classes),
            "preprocess": info.preprocess.to_dict(),
            "name": info.name,
            "probe": {
                "backbone": self.backbone,
                "classifier": self.fit.classifier,
                "C": self.fit.C,
                "cv_accuracy": round(self.fit.cv_accuracy, 6),
                "cv_folds": self.fit.folds,
                "train_images": self.n_images,
                "skipped_images": self.n_skipped,
                "feature_dim": int(self.fit.weight.shape[1]),
                **self.fit.settings,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            },
        }

    def save(self, directory: str | PathLike) -> Path:
        """Write the whole model (safetensors) and its config (JSON); `camloc.load(directory)` reads it back."""
        return save_checkpoint(directory, self.model.state_dict(), self.config())


def fit_probe(
    data: ProbeSet,
    backbone: str = "default",
    *,
    classifier: str = "auto",
    Cs: Sequence[float] | None = None,
    folds: int = 5,
    batch_size: int = 32,
    cache_dir: str | PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    on_skip: Callable[[str], None] = _warn_skip,
    contrast: ContrastSettings = DEFAULT_CONTRAST,
    auto: AutoSettings = DEFAULT_AUTO,
) -> Probe:
    """Extract (or read cached) GAP features of `data` with the frozen backbone, fit the linear classifier and
    return the probe. `classifier`: one of `CLASSIFIERS` ("auto", the default: logreg or cells by
    `camloc.probe.auto`). `contrast`: the settings of the cells classifier's contrast boxes ("cells" and "auto").
    Raises `InputError` for an unknown classifier, fewer than two classes or a class without two readable
    images."""
    if classifier not in CLASSIFIERS:
        raise InputError(f"unknown classifier '{classifier}'; choose one of {', '.join(CLASSIFIERS)}")
    check_labels(data.labels, data.classes, data.name)
    t0 = time.perf_counter()
    model = load(backbone).to(device)
    recipe = backbone_recipe(backbone)
    cache = feature_cache_for(model, recipe["architecture"], cache_dir)
    feats, kept = extract_features(
        model, data.sources, batch_size=batch_size, cache=cache, progress=progress, on_skip=on_skip
    )
    labels = [data.labels[i] for i in kept]
    check_labels(labels, data.classes, data.name, readable=True)
    t1 = time.perf_counter()
    own = backbone_classifier(model) if classifier == "span" else None  # before attach_head replaces it
    sources = [data.sources[i] for i in kept]
    if classifier == "cells":
        fit = fit_cells_probe(
            model, feats, sources, labels, len(data.classes), Cs, folds, contrast=contrast, progress=progress
        )
    elif classifier == "auto":
        fit = fit_auto(model, feats, sources, labels, len(data.classes), Cs, folds, contrast, auto, progress)
    else:
        fit = fit_linear(feats, labels, classifier, Cs, folds, backbone_classifier=own)
    t2 = time.perf_counter()
    info = info_of(model)
    attach_head(model, fit)
    info.labels = list(data.classes)
    info.name = f"probe ({fit.classifier}) on {info.name}"
    setattr(model, "camloc_info", info)  # noqa: B010 - what camloc.load attaches
    return Probe(
        model,
        fit,
        list(data.classes),
        backbone,
        recipe,
        len(kept),
        len(data.sources) - len(kept),
        {"features": t1 - t0, "fit": t2 - t1},
    )
