"""Faithfulness metrics: hand-computed cases, and agreement with torchcam 0.5.0 (deletion / insertion, average drop /
increase) and pytorch-grad-cam 1.5.7 (ROAD, confidence drop / increase) on the same maps, inputs and targets."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camloc.errors import InputError
from camloc.localize.faithfulness import (
    FaithfulnessAccumulator,
    FaithfulnessSettings,
    faithfulness_scores,
    noisy_linear_impute,
    object_fraction,
    parse_metrics,
    pointing_hit,
    removal_keep,
    step_counts,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """conv-ReLU x3 (stride 2 in the middle: maps are upsampled to the input), GAP, one linear layer."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, 2, 1), nn.ReLU(), nn.Conv2d(12, 16, 3, 1, 1)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.features(x))).flatten(1))


def tiny(seed: int = 0, b: int = 3, h: int = 20, w: int = 26) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = TinyNet().eval()
    with torch.no_grad():
        model.fc.weight.mul_(8)  # softmax scores away from uniform, so the curves move
    return model, torch.randn(b, 3, h, w), torch.tensor([1, 4, 2][:b])


class PixelSum(nn.Module):
    """logit 0 = mean of channel 0 over the pixels, logit 1 = 0: a model whose deletion curve is known by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0].mean(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


# ------------------------------------------------------------------------------------ hand-computed


def test_deletion_insertion_hand_computed():
    """2x2 image with channel-0 values 4, 3, 2, 1 (/4), map = the values: deletion removes 4, then 3, ...
    logits (sum kept / 4 pixels): 10, 6, 3, 1, 0 (/4) at fractions 0, .25, .5, .75, 1 -> trapezoid AUC 0.9375;
    insertion 0, 4, 7, 9, 10 (/4) -> 1.5625. Baseline "mean" = zeros, score = the logit."""
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[4.0, 3.0], [2.0, 1.0]]) / 4
    maps = x[:, 0] / x[:, 0].max()
    settings = FaithfulnessSettings(metrics=("deletion", "insertion"), steps=4, baseline="mean", score="logit")
    out = faithfulness_scores(PixelSum(), x, maps, torch.tensor([0]), settings, mean=(0, 0, 0), std=(1, 1, 1))
    assert out["fractions"].tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert torch.allclose(out["deletion_curve"][0] * 16, torch.tensor([10.0, 6, 3, 1, 0]))
    assert torch.allclose(out["insertion_curve"][0] * 16, torch.tensor([0.0, 4, 7, 9, 10]))
    assert out["deletion"].item() == pytest.approx(0.9375 / 4)
    assert out["insertion"].item() == pytest.approx(1.5625 / 4)


def test_step_counts_cover_the_image_with_a_short_last_step():
    assert step_counts(10, 3) == [0, 4, 8, 10]  # ceil(10 / 3) = 4 per step, the last one 2
    assert step_counts(4, 4) == [0, 1, 2, 3, 4]


def test_average_drop_and_increase_hand_computed():
    """PixelSum with softmax: Y = softmax([s, 0])_0. Map 1 everywhere keeps the input (drop 0, no increase); map
    0.5 everywhere halves s."""
    x = torch.full((2, 3, 2, 2), 2.0)
    maps = torch.stack([torch.ones(2, 2), torch.full((2, 2), 0.5)])
    settings = FaithfulnessSettings(metrics=("average-drop", "increase"))
    out = faithfulness_scores(PixelSum(), x, maps, torch.tensor([0, 0]), settings, mean=(0, 0, 0), std=(1, 1, 1))
    y, o = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(1.0))  # softmax([s, 0])_0 = sigmoid(s)
    assert out["drop"].tolist() == pytest.approx([0.0, float((y - o) / y)])
    assert out["absolute_drop"].tolist() == pytest.approx([0.0, float(y - o)])
    assert out["increase"].tolist() == [False, False]


def test_pointing_game_hand_computed():
    heat = np.zeros((60, 80))
    heat[10, 10] = 1.0  # peak at x=10, y=10
    assert not pointing_hit(heat, np.array([[30, 30, 50, 50]]))  # nearest pixel (30, 30): 28.3 px away
    assert pointing_hit(heat, np.array([[20, 20, 40, 40]]))  # (20, 20): 14.1 px
    assert pointing_hit(heat, np.array([[25, 0, 40, 20]]))  # 15 px: on the tolerance
    assert not pointing_hit(heat, np.array([[26, 0, 40, 20]]))  # 16 px
    assert pointing_hit(heat, np.array([[26, 0, 40, 20], [0, 0, 11, 11]]))  # inside the second box
    assert pointing_hit(heat, np.array([[26, 0, 40, 20]]), tolerance=16)
    for box in ([30, 30, 50, 50], [20, 20, 40, 40], [25, 0, 40, 20], [26, 0, 40, 20]):
        mask = np.zeros((60, 80), bool)
        mask[box[1] : box[3], box[0] : box[2]] = True
        assert pointing_hit(heat, mask=mask) == pointing_hit(heat, np.array([box]))
    assert not pointing_hit(np.full((60, 80), np.nan), np.array([[0, 0, 80, 60]]))  # no maximum, no hit
    assert object_fraction((80, 60), np.array([[0, 0, 40, 30], [20, 15, 40, 30]])) == pytest.approx(0.25)


def test_parse_metrics_and_settings_refuse_unknown_names():
    assert parse_metrics("road, deletion,road") == ("road", "deletion")
    assert parse_metrics("all") == FaithfulnessSettings().metrics
    with pytest.raises(InputError, match="unknown metric"):
        parse_metrics("deletion,rise")
    with pytest.raises(InputError, match="baseline"):
        FaithfulnessSettings(baseline="black")


# ------------------------------------------------------------------------------------ imputation


def test_imputer_solves_the_reference_system():
    """noise 0, tight tolerance: every removed pixel is the weighted mean of its in-image neighbours (the ROAD
    equations, checked directly), known pixels unchanged; with noise, the removed pixels move by N(0, 0.01^2)."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 17, 23)
    keep = torch.rand(2, 17, 23) > 0.6
    out = noisy_linear_impute(x, keep, noise=0.0, tol=1e-10)
    kernel = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=torch.float64)
    o = out.double().reshape(6, 1, 17, 23)
    neigh = F.conv2d(o, kernel[None, None], padding=1)
    weight = F.conv2d(torch.ones(1, 1, 17, 23, dtype=torch.float64), kernel[None, None], padding=1)
    removed = (~keep).repeat_interleave(3, dim=0)[:, None]
    assert torch.allclose((neigh / weight)[removed], o[removed], atol=1e-6)
    assert torch.equal(out[keep[:, None].expand_as(x)], x[keep[:, None].expand_as(x)])
    noisy = noisy_linear_impute(x, keep, noise=0.01, seeds=[5, 6], tol=1e-10)
    diff = (noisy - out)[(~keep)[:, None].expand_as(x)]
    assert 0.008 < float(diff.std()) < 0.012 and abs(float(diff.mean())) < 0.002
    assert torch.equal(noisy, noisy_linear_impute(x, keep, noise=0.01, seeds=[5, 6], tol=1e-10))  # seeded


def test_imputer_equals_pytorch_grad_cam_at_the_default_tolerance():
    """A 64x80 image, a smooth map, 10% / 50% / 90% removed: the default float32 solve is within 2e-3 of the
    reference's direct sparse solve (5x below the noise ROAD adds), the float64 one within 1e-6."""
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    torch.manual_seed(2)
    x = F.avg_pool2d(torch.randn(1, 3, 68, 84), 5, 1)  # smooth-ish content, 64 x 80
    m = F.interpolate(torch.rand(1, 1, 5, 6), size=(64, 80), mode="bilinear")[0]
    for frac in (0.1, 0.5, 0.9):
        keep = removal_keep(m, frac, True)
        ref = road.NoisyLinearImputer(noise=0)(x[0], keep[0].float())
        assert float((noisy_linear_impute(x, keep, noise=0)[0] - ref).abs().max()) < 2e-3
        assert float((noisy_linear_impute(x, keep, noise=0, tol=1e-10)[0] - ref).abs().max()) < 1e-6


def test_multigrid_restriction_is_the_adjoint_of_the_prolongation():
    """<R r, c> = <r, P c> on odd and even sizes (the V-cycle is then symmetric, as conjugate gradients need), and
    P of a constant is that constant away from the border (bilinear interpolation)."""
    from camloc.localize.faithfulness import _prolong, _restrict

    torch.manual_seed(3)
    for h, w in ((17, 23), (16, 10), (9, 8)):
        r = torch.randn(2, 1, h, w, dtype=torch.float64)
        c = torch.randn(2, 1, (h + 1) // 2, (w + 1) // 2, dtype=torch.float64)
        assert float((_restrict(r) * c).sum()) == pytest.approx(float((r * _prolong(c, (h, w))).sum()), rel=1e-12)
    inner = _prolong(torch.full((1, 1, 5, 6), 2.0, dtype=torch.float64), (10, 12))[..., 1:-1, 1:-1]
    assert torch.allclose(inner, torch.full_like(inner, 2.0))


# ------------------------------------------------------------------------------------ peers


def torchcam_maps(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """torchcam's CAM of the targets (normalised, fused), resized to the input as its metrics do."""
    from torchcam.methods import CAM as TorchcamCAM

    with TorchcamCAM(model, target_layer="features", fc_layer="fc") as extractor:
        scores = model(x)
        cams = extractor(targets.tolist(), scores)
        cam = extractor.fuse_cams(cams)
    return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def test_deletion_insertion_equal_torchcam():
    """torchcam 0.5.0's DeletionInsertionMetric (softmax, 20 steps, zero-tensor baseline) per image = ours with
    baseline "mean" (the zero input tensor is the normalisation mean colour)."""
    metrics = pytest.importorskip("torchcam.metrics")
    from torchcam.methods import CAM as TorchcamCAM

    model, x, targets = tiny()
    maps = torchcam_maps(model, x, targets)
    settings = FaithfulnessSettings(metrics=("deletion", "insertion"), baseline="mean", steps=20, batch_size=7)
    ours = faithfulness_scores(model, x, maps, targets, settings)
    for i in range(len(x)):
        with TorchcamCAM(model, target_layer="features", fc_layer="fc") as extractor:
            peer = metrics.DeletionInsertionMetric(extractor, partial(torch.softmax, dim=-1))
            peer.update(x[i : i + 1], class_idx=[int(targets[i])])
            got = peer.summary()
        assert ours["deletion"][i].item() == pytest.approx(got["deletion_auc"], abs=1e-5)
        assert ours["insertion"][i].item() == pytest.approx(got["insertion_auc"], abs=1e-5)
    assert ours["deletion"].std() > 1e-3  # the images differ: a real comparison, not a constant


def test_average_drop_and_increase_equal_torchcam():
    metrics = pytest.importorskip("torchcam.metrics")
    from torchcam.methods import CAM as TorchcamCAM

    model, x, targets = tiny(seed=3)
    maps = torchcam_maps(model, x, targets)
    ours = faithfulness_scores(model, x, maps, targets, FaithfulnessSettings(metrics=("average-drop", "increase")))
    with TorchcamCAM(model, target_layer="features", fc_layer="fc") as extractor:
        peer = metrics.ClassificationMetric(extractor, partial(torch.softmax, dim=-1))
        peer.update(x, class_idx=targets.tolist())
        got = peer.summary()
    assert ours["drop"].mean().item() == pytest.approx(got["avg_drop"], rel=1e-5)  # its eps 1e-7 is below that
    assert ours["increase"].float().mean().item() == pytest.approx(got["conf_increase"])
    assert got["avg_drop"] > 0.01


def test_confidence_and_road_equal_pytorch_grad_cam():
    """pytorch-grad-cam's DropInConfidence / IncreaseInConfidence (absolute drop) and ROAD MoRF / LeRF at each
    percentile (score differences after - before, imputation noise 0) = ours on the same maps."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, targets = tiny(seed=4)
    maps = torchcam_maps(model, x, targets)
    settings = FaithfulnessSettings(metrics=("average-drop", "increase", "road"), road_noise=0.0, imputer_tol=1e-10)
    ours = faithfulness_scores(model, x, maps, targets, settings)
    cams = maps.numpy()
    peer_targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    drop = DropInConfidence()(x, cams, peer_targets, model)
    inc = IncreaseInConfidence()(x, cams, peer_targets, model)
    assert np.allclose(ours["absolute_drop"].numpy(), drop, atol=1e-6)
    assert ours["increase"].numpy().tolist() == (inc > 0).tolist()
    for i, frac in enumerate(settings.road_fractions):
        pct = round(100 * (1 - frac))
        for cls, key in ((ROADMostRelevantFirst, "road_morf"), (ROADLeastRelevantFirst, "road_lerf")):
            metric = cls(percentile=pct)
            metric.perturbation.imputer.noise = 0.0
            got = metric(x, cams, peer_targets, model)
            assert np.allclose((ours[key][:, i] - ours["score"]).numpy(), got, atol=1e-5), (key, pct)
    assert (ours["road_morf"].mean(1) != ours["road_lerf"].mean(1)).all()


# ------------------------------------------------------------------------------------ batching, accumulation


def test_batching_does_not_change_the_numbers():
    """One forward pass per perturbed input or 64 at once, images scored alone or together: same per-image values
    (ROAD noise is seeded per image, not per batch)."""
    model, x, targets = tiny(seed=5)
    maps = torchcam_maps(model, x, targets)
    settings = FaithfulnessSettings(metrics=("deletion", "insertion", "average-drop", "road"), steps=5, batch_size=64)
    together = faithfulness_scores(model, x, maps, targets, settings, seeds=[7, 8, 9])
    one = FaithfulnessSettings(metrics=settings.metrics, steps=5, batch_size=1)
    for i in range(len(x)):
        alone = faithfulness_scores(model, x[i : i + 1], maps[i : i + 1], targets[i : i + 1], one, seeds=[7 + i])
        for key in ("deletion", "insertion", "drop", "road_morf", "road_lerf"):
            assert torch.allclose(alone[key][0], together[key][i], atol=1e-5), key


def test_accumulator_sums_merge_and_report():
    model, x, targets = tiny(seed=6)
    maps = torchcam_maps(model, x, targets)
    s = FaithfulnessSettings(steps=4)
    out = faithfulness_scores(model, x, maps, targets, s)
    whole, a, b = FaithfulnessAccumulator(s), FaithfulnessAccumulator(s), FaithfulnessAccumulator(s)
    whole.add_scores(out)
    a.add_scores({k: v[:1] if v.dim() and len(v) == 3 else v for k, v in out.items()})
    b.add_scores({k: v[1:] if v.dim() and len(v) == 3 else v for k, v in out.items()})
    for acc, hits in ((whole, (True, False, True)), (a, (True,)), (b, (False, True))):
        for h in hits:
            acc.add_pointing(h, difficult=h)
    a.set_sums(a.sums() + b.sums())
    rep, merged = whole.report(), a.report()
    assert rep.keys() == merged.keys()
    for key, value in rep.items():
        if isinstance(value, float):
            assert merged[key] == pytest.approx(value), key
    assert merged["road"]["lerf_accuracy"] == pytest.approx(rep["road"]["lerf_accuracy"])
    assert rep["deletion_auc"] == pytest.approx(out["deletion"].mean().item())
    assert merged["deletion_auc"] == pytest.approx(rep["deletion_auc"])
    assert rep["average_drop"] == pytest.approx(100 * out["drop"].mean().item())
    assert rep["road"]["morf"] == pytest.approx(out["road_morf"].mean().item())
    assert rep["road"]["combined_pytorch_grad_cam"] == pytest.approx(
        ((out["road_lerf"] - out["road_morf"]).mean() / 2).item()
    )
    assert rep["pointing_game"] == pytest.approx(200 / 3) and rep["pointing_game_difficult"] == 100.0
