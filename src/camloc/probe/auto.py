"""The default probe classifier "auto": the cells classifier when it classifies as well as logistic regression,
logistic regression otherwise.

Why (issue 11, item 6; docs/probe.md): a probe fitted on pooled features reads the context every cell carries, so
on small objects among clutter its maps spread (1 of 10 boxes on the discs and squares); the cells classifier boxes
them (10 of 10) from boxes the training images draw themselves. Where those boxes miss the objects (photos whose
objects span many cells, Cluttered Fashion-MNIST whose clutter is other classes' items) the cells' rows learn from
the wrong cells and classify worse (0.89 against 0.97; 40% against 69%), so classification tells the two cases
apart with the training images' classes alone: on a stratified subset of at most `trial_images` images
(`trial_indices`), both are cross-validated on the same folds, and cells is kept unless it errs significantly more
often (a one-sided exact McNemar test on the images exactly one of them gets wrong, level `alpha`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from camloc.errors import InputError
from camloc.probe.contrast import reference_images


@dataclass(frozen=True)
class AutoSettings:
    """How "auto" chooses: images in the trial (a stratified seeded subset; all when fewer), the test's level and
    the subset's seed."""

    trial_images: int = 120
    alpha: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trial_images < 4 or not 0 < self.alpha < 1:
            raise InputError("auto classifier: trial_images >= 4 and alpha in (0, 1)")


DEFAULT_AUTO = AutoSettings()


@dataclass(frozen=True)
class AutoChoice:
    """The trial's outcome: held-out images each classifier got right (of `images`), the McNemar p-value of "cells
    errs more often", and the classifier chosen."""

    images: int
    logreg_right: int
    cells_right: int
    p_value: float
    classifier: str

    def settings(self) -> dict[str, float | int | str]:
        """What config.json records of the choice (`LinearFit.settings`)."""
        return {
            "requested": "auto",
            "auto_trial_images": self.images,
            "auto_logreg_right": self.logreg_right,
            "auto_cells_right": self.cells_right,
            "auto_p_value": self.p_value,
        }


def trial_indices(labels: Sequence[int], settings: AutoSettings = DEFAULT_AUTO) -> list[int]:
    """The trial's images: about `trial_images` shared evenly between the classes (`reference_images`), or, with
    more than `trial_images` / 2 classes, 2 images of each of `trial_images` // 2 classes (a seeded subset), so that
    the trial's cost stays bounded whatever the number of classes."""
    classes = sorted(set(labels))
    if 2 * len(classes) > settings.trial_images:
        rng = np.random.default_rng(settings.seed)
        kept = set(rng.choice(classes, settings.trial_images // 2, replace=False).tolist())
        rows = [i for i, y in enumerate(labels) if y in kept]
        return [rows[j] for j in reference_images([labels[i] for i in rows], settings.trial_images, settings.seed)]
    return reference_images(labels, settings.trial_images, settings.seed)


def cells_worse_p(cells_right: np.ndarray, logreg_right: np.ndarray) -> float:
    """One-sided exact McNemar test on paired held-out outcomes (N,) bool, one per image: the probability, were
    both equally accurate, that of the images exactly one gets right, logreg gets at least as many as it did."""
    from scipy.stats import binomtest

    only_logreg = int((~cells_right & logreg_right).sum())
    only_cells = int((cells_right & ~logreg_right).sum())
    if only_logreg + only_cells == 0:
        return 1.0
    return float(binomtest(only_logreg, only_logreg + only_cells, 0.5, alternative="greater").pvalue)


def choose(labels: np.ndarray, logreg_predicted: np.ndarray, cells_predicted: np.ndarray, alpha: float) -> AutoChoice:
    """The choice from both classifiers' held-out predictions (N,) of the same images, against their `labels`
    (N,): cells unless `cells_worse_p` < `alpha`."""
    logreg_right, cells_right = logreg_predicted == labels, cells_predicted == labels
    p = cells_worse_p(cells_right, logreg_right)
    return AutoChoice(
        len(labels), int(logreg_right.sum()), int(cells_right.sum()), p, "logreg" if p < alpha else "cells"
    )


def trial_summary(settings: Mapping[str, Any]) -> str:
    """One line on an "auto" fit's trial from its recorded settings (`AutoChoice.settings`); "" for other fits."""
    if settings.get("requested") != "auto":
        return ""
    if "auto_cells_error" in settings:
        return f"auto kept logreg: the cells classifier could not be fitted ({settings['auto_cells_error']})"
    n = settings["auto_trial_images"]
    return (
        f"auto's trial on {n} images: logreg {settings['auto_logreg_right']}/{n}, cells "
        f"{settings['auto_cells_right']}/{n} right held out, p = {settings['auto_p_value']:.2g}"
    )
