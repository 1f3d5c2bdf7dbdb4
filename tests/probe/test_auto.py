"""The default classifier "auto" (`camloc.probe.auto`): the McNemar test by hand, the choice, and the fit's
logreg branch with its recorded trial. (Its cells branch on the discs and squares: tests/probe/test_probe_maps.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camloc
from camloc.errors import InputError
from camloc.probe import fit as fit_module
from camloc.probe.auto import AutoSettings, cells_worse_p, choose, trial_indices, trial_summary
from camloc.probe.fit import decision_logits, extract_features, fit_probe, open_probe_set
from tests.probe.test_fit import BACKBONE, make_folder, native_logits


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the test net is tiny, and the machine's two cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cells_all_wrong(monkeypatch) -> None:
    """The trial's cells classifier predicts no image right (its held-out predictions are all -1)."""
    monkeypatch.setattr(
        fit_module,
        "held_out_predictions",
        lambda per_image, pooled, n, c, splits, p: -np.ones(len(pooled), dtype=np.int64),
    )


def outcomes(only_logreg: int, only_cells: int, both: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Paired right/wrong outcomes (cells, logreg) with the given discordant counts and `both` right by both."""
    cells = [False] * only_logreg + [True] * only_cells + [True] * both
    logreg = [True] * only_logreg + [False] * only_cells + [True] * both
    return np.array(cells), np.array(logreg)


@pytest.mark.parametrize(
    ("only_logreg", "only_cells", "expected"),
    [(5, 0, 1 / 32), (4, 0, 1 / 16), (3, 1, 5 / 16), (1, 3, 15 / 16), (0, 0, 1.0), (1, 0, 0.5)],
)
def test_mcnemar_by_hand(only_logreg, only_cells, expected) -> None:
    """P(X >= b) for X ~ Binomial(b + c, 1/2): (5, 0) -> 2^-5; (3, 1) -> (C(4,3) + C(4,4)) / 16."""
    assert cells_worse_p(*outcomes(only_logreg, only_cells)) == pytest.approx(expected, abs=1e-12)


def test_choice_keeps_cells_unless_significantly_worse() -> None:
    y = np.zeros(10, dtype=np.int64)
    logreg = np.zeros(10, dtype=np.int64)
    four_wrong = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    five_wrong = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    kept = choose(y, logreg, four_wrong, alpha=0.05)
    assert (kept.classifier, kept.logreg_right, kept.cells_right, kept.p_value) == ("cells", 10, 6, 1 / 16)
    assert choose(y, logreg, five_wrong, alpha=0.05).classifier == "logreg"  # p = 1/32
    assert choose(y, logreg, four_wrong, alpha=0.1).classifier == "logreg"  # 1/16 < 0.1
    assert trial_summary(kept.settings()) == (
        "auto's trial on 10 images: logreg 10/10, cells 6/10 right held out, p = 0.062"
    )
    assert trial_summary({"contrast_threshold": 0.7}) == ""
    with pytest.raises(InputError):
        AutoSettings(trial_images=3)


def test_auto_falls_back_to_logreg_and_records_its_trial(tmp_path, cells_all_wrong) -> None:
    """Cells' held-out predictions all wrong: auto returns the logreg fit (its logits are the pipeline's decision
    function), on a trial of every image (12 < 120), and config.json records the trial."""
    data = open_probe_set(make_folder(tmp_path / "data", n_classes=3, per_class=4))
    probe = fit_probe(data, BACKBONE, Cs=[1.0], folds=2)
    meta = probe.config()["probe"]
    assert meta["classifier"] == "logreg" and meta["requested"] == "auto" and meta["auto_trial_images"] == 12
    assert meta["auto_cells_right"] == 0 and meta["auto_p_value"] == pytest.approx(0.5 ** meta["auto_logreg_right"])
    assert probe.model.camloc_info.name.startswith("probe (logreg)")
    feats, _ = extract_features(probe.model, data.sources)
    np.testing.assert_allclose(
        native_logits(probe.model, data.sources), decision_logits(probe.fit, feats), rtol=1e-4, atol=1e-4
    )
    probe.save(tmp_path / "p")
    assert camloc.load(tmp_path / "p").camloc_info.labels == data.classes


def test_trial_indices_bound_the_trial() -> None:
    """Few classes: about `trial_images` shared evenly (all of a small class); many: 2 images of half as many
    classes as `trial_images`."""
    labels = [0] * 50 + [1] * 50 + [2] * 5
    few = trial_indices(labels, AutoSettings(trial_images=30))
    assert [sum(labels[i] == c for i in few) for c in range(3)] == [10, 10, 5]
    many = [c for c in range(40) for _ in range(3)]
    picked = trial_indices(many, AutoSettings(trial_images=20))
    assert len(picked) == 20 and len({many[i] for i in picked}) == 10
    assert all(sum(many[i] == c for i in picked) == 2 for c in {many[i] for i in picked})


def test_auto_on_a_class_subset_fits_cells_afresh(tmp_path, cells_all_wrong) -> None:
    """A trial of 4 images of 2 of the 3 classes (trial_images 4), cells' held-out predictions all wrong: logreg
    gets at most 4 right, p >= 1/16, so cells is kept and fitted on every image and class."""
    data = open_probe_set(make_folder(tmp_path / "data", n_classes=3, per_class=4))
    probe = fit_probe(data, BACKBONE, folds=2, auto=AutoSettings(trial_images=4))
    meta = probe.config()["probe"]
    assert meta["classifier"] == "cells" and meta["requested"] == "auto" and meta["auto_trial_images"] == 4
    assert meta["auto_p_value"] >= 1 / 16 and meta["auto_cells_right"] == 0
    assert probe.fit.weight.shape[0] == 3 and meta["cv_folds"] == 2


def test_auto_keeps_logreg_when_cells_cannot_be_fitted(tmp_path, monkeypatch, caplog) -> None:
    """A cells fit that raises (here: no labelled cells for a class) leaves the default working: logreg, the reason
    logged, recorded and summarised."""

    def no_cells(*args, **kwargs):
        raise InputError("cell fit: no labelled cells for class(es) [1] (every image's box was empty?)")

    monkeypatch.setattr(fit_module, "labelled_cells", no_cells)
    data = open_probe_set(make_folder(tmp_path / "data", n_classes=2, per_class=3))
    probe = fit_probe(data, BACKBONE, Cs=[1.0], folds=2)
    meta = probe.config()["probe"]
    assert (
        meta["classifier"] == "logreg" and meta["requested"] == "auto" and "class(es) [1]" in meta["auto_cells_error"]
    )
    assert "could not be fitted" in caplog.text
    assert trial_summary(probe.fit.settings).startswith("auto kept logreg: the cells classifier could not be fitted")


def test_auto_reuses_the_trials_cells_for_the_same_fit_as_cells(tmp_path) -> None:
    """A trial of 6 of 12 images with every class, cells kept (alpha tiny): the trial's labelled cells plus the
    rest's give the rows and cross-validated accuracy `--classifier cells` fits from scratch."""
    data = open_probe_set(make_folder(tmp_path / "data", n_classes=3, per_class=4))
    torch.manual_seed(0)  # the test net's random weights: the same backbone for both fits
    auto = fit_probe(data, BACKBONE, folds=2, auto=AutoSettings(trial_images=6, alpha=1e-9))
    torch.manual_seed(0)
    cells = fit_probe(data, BACKBONE, classifier="cells", folds=2)
    assert auto.fit.classifier == "cells" and auto.config()["probe"]["auto_trial_images"] == 6
    np.testing.assert_allclose(auto.fit.weight, cells.fit.weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(auto.fit.bias, cells.fit.bias, rtol=1e-5, atol=1e-6)
    assert auto.fit.cv_accuracy == cells.fit.cv_accuracy and auto.fit.folds == cells.fit.folds == 2
