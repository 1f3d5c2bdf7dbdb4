"""The probe classifier "span": each class's row a non-negative combination of the backbone's own classifier rows.

Why (issue 11, item 6; docs/probe.md): a probe row fitted freely on pooled features is whatever direction separates
the training images; from a few dozen images that is often a colour ("red, not blue"), and the CAM applies it to
every cell, so the map lights up everything of that colour and, with two classes, one class's map is minus the
other's. An ImageNet classifier's rows were trained on a million images to answer for objects and not for their
surroundings. Writing each probe row as a non-negative mix of them,

    logit_c = sum_j a_cj (W_j . f + b_j - m_j) / s_j + d_c,    a_cj >= 0,

(m_j, s_j: mean and spread of ImageNet logit j over the training images) keeps every class map a mix of ImageNet
class maps, each class with its own. The model stays GAP + one linear layer (row a W / s, bias from b, m, d), so the
CAM identity holds exactly. Fitted by L-BFGS-B on softmax cross-entropy with scikit-learn's L2 convention
(C * sum of losses + |a|^2 / 2), C chosen by stratified cross-validation on the held-out log-loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from camloc.errors import InputError
from camloc.models.adapters import get_adapter


@dataclass
class SpanModel:
    """A fitted span classifier on raw pooled features: logits = (features @ W.T + b) @ rows.T + offsets.

    classifier_weight (J, C) and classifier_bias (J,): the backbone's own classifier; rows (K, J) >= 0 (already
    divided by the logits' spread); offsets (K,)."""

    classifier_weight: np.ndarray
    classifier_bias: np.ndarray
    rows: np.ndarray
    offsets: np.ndarray

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """(N, C) pooled features -> (N, K) logits, as scikit-learn's classifiers name it."""
        return (np.asarray(features, np.float64) @ self.classifier_weight.T + self.classifier_bias) @ self.rows.T + (
            self.offsets
        )

    @property
    def weight(self) -> np.ndarray:
        """(K, C) the probe's linear weights on pooled features."""
        return self.rows @ self.classifier_weight

    @property
    def bias(self) -> np.ndarray:
        """(K,) the probe's biases."""
        return self.rows @ self.classifier_bias + self.offsets


def nonnegative_softmax_fit(
    z: np.ndarray, labels: np.ndarray, n_classes: int, C: float
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression with non-negative weights: z (N, J), labels (N,) in 0..K-1 -> a (K, J) >= 0, d (K,)
    minimising C * sum of cross-entropies + |a|^2 / 2 (scikit-learn's convention; divided by C * N here)."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    n, dim = z.shape
    k = n_classes
    onehot = np.eye(k)[labels]
    penalty = 1.0 / (2.0 * C * n)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, d = theta[: k * dim].reshape(k, dim), theta[k * dim :]
        log_p = log_softmax(z @ a.T + d, axis=1)
        value = -float(log_p[np.arange(n), labels].mean()) + penalty * float((a * a).sum())
        g = (np.exp(log_p) - onehot) / n
        return value, np.concatenate([(g.T @ z + 2.0 * penalty * a).ravel(), g.sum(axis=0)])

    bounds = [(0.0, None)] * (k * dim) + [(None, None)] * k
    res = minimize(loss, np.zeros(k * dim + k), jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000})
    return res.x[: k * dim].reshape(k, dim), res.x[k * dim :]


def fit_logits(logits: np.ndarray, labels: np.ndarray, n_classes: int, C: float) -> tuple[np.ndarray, np.ndarray]:
    """One span fit on the backbone's logits (N, J) of the training images -> rows (K, J) >= 0 and offsets (K,)
    such that the probe's logits are logits @ rows.T + offsets (the standardisation folded in)."""
    mean, spread = logits.mean(axis=0), logits.std(axis=0) + 1e-6
    a, d = nonnegative_softmax_fit((logits - mean) / spread, labels, n_classes, C)
    rows = a / spread
    return rows, d - rows @ mean


def backbone_classifier(model: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    """The classifier a span probe mixes: the model's own linear weight (J, C) and bias (J,) or None, float64."""
    adapter = get_adapter(model)
    bias = adapter.bias
    return (
        adapter.weight.detach().double().cpu().numpy(),
        None if bias is None else bias.detach().double().cpu().numpy(),
    )


def fit_span(
    features: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    classifier_weight: np.ndarray,
    classifier_bias: np.ndarray | None,
    Cs: Sequence[float],
    n_splits: int,
    seed: int = 0,
) -> tuple[SpanModel, float, float]:
    """Choose C by stratified `n_splits`-fold cross-validation on the held-out log-loss (accuracy ties whenever the
    classes separate, as two-class probes often do), then fit on all images. features (N, C) pooled,
    classifier_weight (J, C) of the backbone, classifier_bias (J,) or None. Returns (model, C, cross-validated
    accuracy)."""
    from scipy.special import log_softmax
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    weight = np.asarray(classifier_weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[1] != x.shape[1]:
        raise InputError(
            f"the span classifier needs the backbone's classifier on its {x.shape[1]} pooled features; "
            f"found weights of shape {tuple(weight.shape)}"
        )
    bias = np.zeros(len(weight)) if classifier_bias is None else np.asarray(classifier_bias, dtype=np.float64)
    logits = x @ weight.T + bias  # once: every fold and every C fits on these
    k = int(y.max()) + 1
    folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(x, y))
    losses, accuracies = [], []
    for c in Cs:
        nll, right = 0.0, 0
        for train, val in folds:
            rows, offsets = fit_logits(logits[train], y[train], k, c)
            log_p = log_softmax(logits[val] @ rows.T + offsets, axis=1)
            nll -= float(log_p[np.arange(len(val)), y[val]].sum())
            right += int((log_p.argmax(axis=1) == y[val]).sum())
        losses.append(nll / len(y))
        accuracies.append(right / len(y))
    best = int(np.argmin(losses))
    rows, offsets = fit_logits(logits, y, k, Cs[best])
    return SpanModel(weight, bias, rows, offsets), float(Cs[best]), float(accuracies[best])
