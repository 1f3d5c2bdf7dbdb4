"""Cluttered Fashion-MNIST: IDX reading, ground truth, determinism, splits, caching and bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from camloc.data.cluttered import ClutteredFashionMNIST, ClutterSpec, TensorView, mask_box
from camloc.data.idx import load_split, read_idx
from camloc.errors import InputError
from tests.fake_fashion import idx_bytes, write_fake_fashion


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return write_fake_fashion(tmp_path_factory.mktemp("fm"))


def test_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x08", "bad magic"),
        (b"\x01\x02\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
        (idx_bytes(np.zeros((4, 2), np.uint8))[:-1], "header"),
        (b"\x00\x00\x08\x03\x00", "truncated"),
    ],
)
def test_malformed_idx(tmp_path, content, message):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_idx(tmp_path / "bad")


def test_bad_gzip_and_missing_files(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="gzip"):
        read_idx(tmp_path / "x.gz")
    with pytest.raises(InputError, match="missing"):
        load_split(tmp_path, "train")
    with pytest.raises(InputError, match="train-images"):
        ClutteredFashionMNIST("train", idx_dir=tmp_path)


def test_labels_images_mismatch(tmp_path, idx_dir):
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((idx_dir / name).read_bytes())
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(InputError, match="do not match"):
        load_split(tmp_path, "train")


def test_sample_ground_truth(idx_dir):
    ds = ClutteredFashionMNIST("train", size=40, idx_dir=idx_dir)
    for i in range(len(ds)):
        s = ds[i]
        assert s.image.shape == (96, 96, 3) and s.image.dtype == np.uint8
        assert s.mask.shape == (96, 96) and s.mask.any()
        np.testing.assert_array_equal(s.boxes[0], mask_box(s.mask))
        x0, y0, x1, y1 = s.boxes[0]
        assert s.mask[y0:y1, x0:x1].sum() == s.mask.sum()  # tight and complete
        assert s.mask[y0, x0:x1].any() and s.mask[y1 - 1, x0:x1].any()
        assert s.mask[y0:y1, x0].any() and s.mask[y0:y1, x1 - 1].any()
        assert (s.image[..., 0][s.mask] >= ds.spec.mask_level).all()  # mask pixels are the item's ink
        assert 0 <= s.label < 10
        assert (s.image[..., 0][~s.mask] > 0).any()  # clutter outside the item


def test_scale_range_sets_item_size(idx_dir):
    spec = ClutterSpec(canvas=64, scale=(1.5, 1.5), clutter=0)
    ds = ClutteredFashionMNIST("test", spec=spec, idx_dir=idx_dir)
    for i in range(10):
        s = ds[i]
        w, h = s.boxes[0, 2] - s.boxes[0, 0], s.boxes[0, 3] - s.boxes[0, 1]
        assert w <= 42 and h <= 42 and s.image.shape == (64, 64, 3)
        assert (s.image[..., 0][~s.mask] < spec.mask_level).all()  # no clutter: all ink is the item's


def test_deterministic_from_seed(idx_dir):
    a = ClutteredFashionMNIST("val", idx_dir=idx_dir)
    b = ClutteredFashionMNIST("val", idx_dir=idx_dir)
    c = ClutteredFashionMNIST("val", idx_dir=idx_dir, spec=ClutterSpec(seed=1))
    for i in (0, 3, 5):
        np.testing.assert_array_equal(a[i].image, b[i].image)
        np.testing.assert_array_equal(a[i].boxes, b[i].boxes)
        assert a[i].image_id == b[i].image_id == f"val/{i:06d}"
    assert any((a[i].image != c[i].image).any() for i in range(len(a)))
    np.testing.assert_array_equal(a[len(a) - 1].image, a[-1].image)


def test_splits_use_disjoint_items(idx_dir):
    train = ClutteredFashionMNIST("train", idx_dir=idx_dir)
    val = ClutteredFashionMNIST("val", idx_dir=idx_dir)
    test = ClutteredFashionMNIST("test", idx_dir=idx_dir)
    assert (len(train), len(val), len(test)) == (54, 6, 20)
    train_items = {it.tobytes() for it in train.items}
    assert not any(it.tobytes() in train_items for it in val.items)


def test_arrays_cache_roundtrip(idx_dir, tmp_path):
    ds = ClutteredFashionMNIST("test", size=12, idx_dir=idx_dir)
    first = ds.arrays(cache_dir=tmp_path)
    assert len(list(tmp_path.glob("test-*.npz"))) == 1
    again = ds.arrays(cache_dir=tmp_path)
    for name in ("images", "labels", "boxes", "masks"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    np.testing.assert_array_equal(first.images[5], ds[5].image[..., 0])
    np.testing.assert_array_equal(first.masks[5], ds[5].mask)
    view = TensorView(first)
    x, y, b = view.get_batch(torch.tensor([0, 5]))
    assert x.shape == (2, 3, 96, 96) and y.tolist() == first.labels[[0, 5]].tolist()
    assert torch.equal(b, torch.from_numpy(first.boxes[[0, 5]]))


def test_bad_spec_and_split(idx_dir):
    with pytest.raises(InputError, match="fit"):
        ClutterSpec(canvas=40, scale=(1.0, 2.0))
    with pytest.raises(InputError, match="split"):
        ClutteredFashionMNIST("holdout", idx_dir=idx_dir)


def test_evaluation_format(idx_dir, tmp_path, monkeypatch):
    from camloc.data import open_dataset

    monkeypatch.chdir(tmp_path)  # the opener caches under ./.cache
    ds = open_dataset(f"cluttered:{idx_dir}", split="test", size=5)
    ref = ClutteredFashionMNIST("test", 5, idx_dir=idx_dir)
    assert len(ds) == 5 and ds.class_names[0] == "T-shirt/top"
    s = ds[2]
    np.testing.assert_array_equal(s.image, ref[2].image)
    np.testing.assert_array_equal(s.boxes, ref[2].boxes.astype(float))
    fg, ignore = s.masks()
    np.testing.assert_array_equal(fg, ref[2].mask)
    assert ignore is None and s.size == (96, 96) and s.label == ref[2].label


def test_camloc_evaluate_reads_cluttered(idx_dir, tmp_path, monkeypatch, capsys):
    """`camloc evaluate --data cluttered:DIR` runs a GapNet checkpoint on the array images of the format."""
    from camloc.cli import main
    from camloc.io import save_checkpoint
    from camloc.models.gapnet import gapnet

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    kw = {"num_classes": 10, "final_stride": 8, "widths": [8, 8, 16]}
    save_checkpoint(
        tmp_path / "net",
        gapnet(**kw).state_dict(),
        {"architecture": "gapnet", "arch_kwargs": kw, "preprocess": ClutterSpec().preprocess()},
    )
    rc = main(
        [
            "evaluate",
            "--data",
            f"cluttered:{idx_dir}",
            "--split",
            "test",
            "--model",
            str(tmp_path / "net"),
            "--resolution",
            "native",
            "--map-sizes",
            "native",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "images: 20" in out and "pxap" in out
