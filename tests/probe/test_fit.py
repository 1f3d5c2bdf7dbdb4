"""Linear probes: features, fit, export, load, CAM identity, CLI and bad input. Tiny generated folders; a random
timm test net for speed, plus one run on the real default backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.cli import main
from camloc.engine import check_identity
from camloc.errors import InputError
from camloc.io import load_image
from camloc.models.adapters import get_adapter
from camloc.models.zoo import info_of
from camloc.preprocess import image_to_tensor
from camloc.probe.features_cache import FeatureCache, model_key, source_id
from camloc.probe.fit import decision_logits, extract_features, fit_probe, open_probe_set

BACKBONE = "test_efficientnet"  # timm's tiny test net: random weights, 256 channels, fast on a CPU
COLORS = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these nets are tiny, and the machine's two cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_folder(root: Path, n_classes: int = 3, per_class: int = 4, seed: int = 0) -> Path:
    """root/class<k>/<i>.png: noise with a coloured rectangle whose colour is the class."""
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 60, (40 + 8 * (i % 2), 56, 3)).astype(np.uint8)  # two image shapes
            y, x = rng.integers(0, 16), rng.integers(0, 24)
            a[y : y + 20, x : x + 28] = COLORS[c]
            Image.fromarray(a).save(d / f"{i}.png")
    return root


def native_logits(model: torch.nn.Module, paths: list[Path]) -> np.ndarray:
    """The model's own logits, one image at a time, preprocessed as `explain` does."""
    pre = info_of(model).preprocess
    with torch.no_grad():
        return torch.cat(
            [model.eval()(image_to_tensor(load_image(p), pre.input_size, pre)[None]) for p in paths]
        ).numpy()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("data"))
    data = open_probe_set(root)
    probe = fit_probe(
        data, BACKBONE, classifier="logreg", Cs=[0.1, 1.0], folds=2, cache_dir=tmp_path_factory.mktemp("cache")
    )
    return data, probe


def test_probe_logits_equal_decision_function(fitted):
    data, probe = fitted
    feats, kept = extract_features(probe.model, data.sources)
    assert kept == list(range(len(data.sources)))
    expected = decision_logits(probe.fit, feats)
    got = native_logits(probe.model, data.sources)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_probe_cam_identity(fitted):
    data, probe = fitted
    res = camloc.explain(probe.model, data.sources[:4], top_k=3, map_sizes=())
    bias = get_adapter(probe.model).bias.detach()
    raws = res.raw if isinstance(res.raw, list) else list(res.raw)
    for i, raw in enumerate(raws):
        gap = check_identity(raw[None], res.all_logits[i : i + 1], res.classes[i : i + 1], bias)
        assert float(gap) < 1e-4
    assert res.labels(0)[0] in data.classes


def test_save_load_explain_round_trip(fitted, tmp_path):
    data, probe = fitted
    probe.save(tmp_path / "probe")
    model = camloc.load(tmp_path / "probe")
    assert type(model) is type(probe.model) and isinstance(model, torch.nn.Module)
    assert model.camloc_info.labels == data.classes
    assert get_adapter(model).num_classes == 3
    for k, v in probe.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    np.testing.assert_allclose(
        native_logits(model, data.sources[:3]), native_logits(probe.model, data.sources[:3]), atol=1e-6
    )
    res = camloc.explain(model, data.sources[:2], top_k=2, map_sizes=())
    assert res.maps[0].shape[-2:] == (40, 56) and res.boxes.shape == (2, 2, 4)


def test_evaluate_loads_the_probe(fitted, tmp_path, capsys):
    """`camloc evaluate --model probe/` on wsol metadata of the training images (whole-image boxes)."""
    import json

    data, probe = fitted
    probe.save(tmp_path / "probe")
    root = Path(data.sources[0]).parents[1]
    meta = tmp_path / "meta"
    meta.mkdir()
    ids = [str(Path(p).relative_to(root)) for p in data.sources]
    sizes = [Image.open(p).size for p in data.sources]
    lines = {
        "image_ids": ids,
        "class_labels": [f"{i},{c}" for i, c in zip(ids, data.labels, strict=False)],
        "image_sizes": [f"{i},{w},{h}" for i, (w, h) in zip(ids, sizes, strict=False)],
        "localization": [f"{i},0,0,{w},{h}" for i, (w, h) in zip(ids, sizes, strict=False)],
    }
    for name, rows in lines.items():
        (meta / f"{name}.txt").write_text("\n".join(rows) + "\n")
    rc = main(
        [
            "evaluate",
            "--data",
            f"wsol:{meta}",
            "--images",
            str(root),
            "--model",
            str(tmp_path / "probe"),
            "--map-sizes",
            "native",
            "--report",
            str(tmp_path / "r.json"),
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0 <= report["top1_cls"] <= 100 and "maxboxacc_v2" in report


def test_cli_fit_then_explain(tmp_path, capsys):
    root = make_folder(tmp_path / "data", n_classes=2, per_class=3)
    (root / "class1" / "broken.png").write_bytes(b"not a png")
    rc = main(
        [
            "probe",
            "fit",
            "--data",
            f"folder:{root}",
            "--backbone",
            BACKBONE,
            "--out",
            str(tmp_path / "p"),
            "--classifier",
            "svm",
            "--C",
            "0.01,1",
            "--folds",
            "3",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    skipped = [line for line in err.splitlines() if "broken.png" in line]
    assert len(skipped) == 1 and skipped[0].startswith("camloc: skipped")
    assert "1 unreadable image(s) skipped" in err
    model = camloc.load(tmp_path / "p")
    assert model.camloc_info.labels == ["class0", "class1"]
    config = (tmp_path / "p" / "config.json").read_text()
    assert '"classifier": "svm"' in config and '"train_images": 6' in config
    rc = main(
        [
            "explain",
            str(root / "class0"),
            "--model",
            str(tmp_path / "p"),
            "--top-k",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "out"),
            "--map-sizes",
            "native",
            "--format",
            "json",
            "--no-images",
        ]
    )
    assert rc == 0 and len(list((tmp_path / "out").glob("*.json"))) == 3


def test_binary_svm_logits_equal_decision_function(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=2, per_class=3)
    probe = fit_probe(open_probe_set(root), BACKBONE, classifier="svm", Cs=[0.1], folds=3)
    sources = open_probe_set(root).sources
    feats, _ = extract_features(probe.model, sources)
    d = probe.fit.estimator.decision_function(feats.astype(np.float64))
    got = native_logits(probe.model, sources)
    np.testing.assert_allclose(got[:, 1] - got[:, 0], d, rtol=1e-4, atol=1e-4)


def test_feature_cache_is_used_and_keyed(fitted, tmp_path, monkeypatch):
    data, probe = fitted
    model = probe.model
    cache = FeatureCache(tmp_path, model_key(BACKBONE, model, info_of(model).preprocess))
    first, _ = extract_features(model, data.sources, cache=cache)
    assert len(list(tmp_path.rglob("*.npy"))) == len(data.sources)
    monkeypatch.setattr("camloc.probe.fit.load_image", lambda p: (_ for _ in ()).throw(AssertionError("decoded")))
    second, _ = extract_features(model, data.sources, cache=cache)
    np.testing.assert_array_equal(first, second)
    pre = info_of(model).preprocess
    other = type(pre)(pre.mean, pre.std, pre.input_size + 32, pre.interpolation)
    assert model_key(BACKBONE, model, other) != cache.folder.name
    copy = tmp_path / "copy.png"
    copy.write_bytes(Path(data.sources[0]).read_bytes())
    ident = source_id(copy)
    Image.new("RGB", (50, 50)).save(copy)
    assert source_id(copy) != ident


def test_one_class_is_refused(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=1)
    with pytest.raises(InputError, match="at least two classes"):
        fit_probe(open_probe_set(root), BACKBONE)


def test_empty_class_folder_is_named(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=2)
    (root / "zebra").mkdir()
    with pytest.raises(InputError, match="class 'zebra' has no image;"):
        fit_probe(open_probe_set(root), BACKBONE)


def test_folder_errors_and_unreadable_class(tmp_path, capsys):
    with pytest.raises(InputError, match="no such folder"):
        open_probe_set(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(InputError, match="no class sub-folders"):
        open_probe_set(tmp_path / "flat")
    root = make_folder(tmp_path / "data", n_classes=2, per_class=2)
    assert open_probe_set(f"folder:{root}").classes == ["class0", "class1"]
    with pytest.raises(InputError, match="--images does not apply to the 'folder' format"):
        open_probe_set(root, images="elsewhere")
    for p in (root / "class1").iterdir():
        p.write_bytes(b"")
    rc = main(
        [
            "probe",
            "fit",
            "--data",
            str(root),
            "--backbone",
            BACKBONE,
            "--out",
            str(tmp_path / "p"),
            "--no-cache",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "class 'class1' has no readable image" in err
    assert err.count("empty file") == 2


def test_torchvision_backbone_round_trip(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=2, per_class=2)
    data = open_probe_set(root)
    probe = fit_probe(data, "resnet18", classifier="logreg", Cs=[1.0], folds=2)
    probe.save(tmp_path / "p")
    model = camloc.load(tmp_path / "p")
    assert isinstance(model.fc, torch.nn.Linear) and model.fc.out_features == 2
    feats, _ = extract_features(model, data.sources)
    np.testing.assert_allclose(
        native_logits(model, data.sources), decision_logits(probe.fit, feats), rtol=1e-4, atol=1e-4
    )


def test_default_backbone_on_a_few_images(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=2, per_class=3)
    data = open_probe_set(root)
    probe = fit_probe(data, "default", classifier="logreg", Cs=[1.0], folds=3)
    assert probe.recipe == {"architecture": "tf_efficientnet_lite0", "arch_kwargs": {}}
    probe.save(tmp_path / "p")
    model = camloc.load(tmp_path / "p")
    feats, _ = extract_features(model, data.sources)
    assert feats.shape == (6, 1280)
    np.testing.assert_allclose(
        native_logits(model, data.sources), decision_logits(probe.fit, feats), rtol=1e-4, atol=1e-4
    )
    res = camloc.explain(model, data.sources[:1], top_k=2, map_sizes=())
    assert float(check_identity(res.raw, res.all_logits, res.classes, get_adapter(model).bias.detach())) < 1e-3


def gray_split(n_per_class: int, seed: int, n_classes: int = 3):
    """Benchmark-split arrays: 64x64 gray canvases with a bright square whose brightness is the class."""
    from camloc.data.cluttered import ClutteredArrays

    rng = np.random.default_rng(seed)
    images, labels, boxes, masks = [], [], [], []
    for c in range(n_classes):
        for _ in range(n_per_class):
            a = rng.integers(0, 50, (64, 64)).astype(np.uint8)
            y, x = (int(v) for v in rng.integers(0, 40, 2))
            a[y : y + 24, x : x + 24] = 140 + 50 * c
            m = np.zeros((64, 64), bool)
            m[y : y + 24, x : x + 24] = True
            images.append(a)
            labels.append(c)
            boxes.append([x, y, x + 24, y + 24])
            masks.append(m)
    return ClutteredArrays(np.stack(images), np.array(labels), np.array(boxes), np.stack(masks))


class _BrightNet(torch.nn.Module):
    """A GAP net whose CAM of class 0 is the bright square (features relu(x)); class 1 is its negative."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]) / 3)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_bench_scoring_of_a_perfect_map():
    from camloc.probe.bench_row import score_probe

    split = gray_split(3, 3, n_classes=1)
    row = score_probe(_BrightNet(), 1.5, split, split, "bright")
    assert row["top1_cls"] == 100.0 and row["top1_loc"] == 100.0 and row["gt_known_loc"] == 100.0
    assert row["maxboxacc_v2"]["mean"] == 100.0 and row["pxap"] > 95.0
    assert row["feature_resolution"] == [224, 224] and row["train_seconds"] == 1.5


def test_bench_row_format_and_reuse(tmp_path):
    from camloc.probe.bench_row import bench_row

    train, test = gray_split(4, 1), gray_split(2, 2)
    row = bench_row(train, test, test, backbone=BACKBONE, classes="abc", Cs=[1.0], folds=2, save_to=tmp_path / "p")
    for key in (
        "method",
        "feature_resolution",
        "top1_cls",
        "top1_loc",
        "gt_known_loc",
        "maxboxacc_v2",
        "pxap",
        "train_seconds",
    ):
        assert key in row, key
    assert row["feature_resolution"] == [5, 5]  # test_efficientnet at 160 px: stride 32
    for key in ("top1_cls", "top1_loc", "gt_known_loc", "pxap"):
        assert 0.0 <= row[key] <= 100.0, key
    assert 0.0 <= row["maxboxacc_v2"]["mean"] <= 100.0
    assert row["top1_loc"] <= row["top1_cls"] and row["train_seconds"] > 0
    again = bench_row(train, test, test, backbone=BACKBONE, classes="abc", Cs=[1.0], folds=2, save_to=tmp_path / "p")
    assert again == row  # the saved probe is reused: same numbers, same recorded time


@pytest.mark.slow  # trains GapNets and runs the real backbone: about 40 s of CPU (make test-slow)
def test_probe_row_in_the_localization_bench(tmp_path, monkeypatch):
    from camloc.bench.localization import Study, run_study
    from camloc.bench.report import write_all
    from tests.fake_fashion import write_fake_fashion

    monkeypatch.chdir(tmp_path)  # the split cache goes under ./.cache
    idx = write_fake_fashion(tmp_path / "fm", n_train=60, n_test=10)
    study = Study(
        strides=(32,),
        widths=(8, 8, 8, 8, 8),
        regressor_stride=32,
        reference_stride=32,
        train_size=40,
        val_size=6,
        test_size=10,
        epochs=1,
        batch_size=20,
        probe_train_size=30,
    )
    rows, info = run_study(tmp_path / "out", study, str(idx), quiet=True, log=lambda _m: None)
    probe = [r for r in rows if r["method"].startswith("probe")]
    assert len(probe) == 1 and probe[0]["feature_resolution"] == [7, 7]
    assert "30 train images" in probe[0]["method"] and probe[0]["train_seconds"] > 0
    write_all(tmp_path / "out", rows, info, "test")
    assert "| probe (logreg, 30 train images)" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "resolution.png").stat().st_size > 0


def test_cli_cells_takes_a_contrast_threshold(tmp_path, capsys):
    """`--contrast-threshold` reaches the cells fit and its config; with another classifier, or out of (0, 1), it
    is a one-line error."""
    root = make_folder(tmp_path / "data", n_classes=2, per_class=3)
    base = ["probe", "fit", "--data", str(root), "--backbone", BACKBONE, "--folds", "3", "--no-cache", "--quiet"]
    rc = main([*base, "--out", str(tmp_path / "p"), "--classifier", "cells", "--contrast-threshold", "0.4"])
    assert rc == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["probe"]["classifier"] == "cells" and config["probe"]["contrast_threshold"] == 0.4
    capsys.readouterr()
    rc = main([*base[:-1], "--out", str(tmp_path / "a"), "--contrast-threshold", "0.4"])  # the default: auto
    err = capsys.readouterr().err
    config = json.loads((tmp_path / "a" / "config.json").read_text())["probe"]
    assert rc == 0 and config["requested"] == "auto" and config["auto_trial_images"] == 6, err
    assert f"probe ({config['classifier']} chosen by auto" in err and "auto's trial on 6 images: logreg" in err
    for extra, message in (
        (["--classifier", "logreg", "--contrast-threshold", "0.4"], "applies to --classifier cells or auto only"),
        (["--classifier", "cells", "--contrast-threshold", "1.5"], "must be in (0, 1), got 1.5"),
    ):
        capsys.readouterr()
        rc = main([*base, "--out", str(tmp_path / "q"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0], err
