"""Image decoding for every mode users have, and clear errors for files that cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc import io
from camloc.errors import InputError
from camloc.io import load_image


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_modes_become_rgb(tmp_path: Path) -> None:
    gray = save(Image.new("L", (8, 6), 100), tmp_path / "gray.png")
    rgba = Image.new("RGBA", (8, 6), (255, 0, 0, 0))  # fully transparent red -> white
    rgba_path = save(rgba, tmp_path / "rgba.png")
    palette = save(
        Image.new("RGB", (8, 6), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE), tmp_path / "pal.png"
    )
    cmyk = save(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    deep = save(Image.fromarray(np.full((6, 8), 65535 // 2, dtype=np.uint16)), tmp_path / "deep.png")
    for p in (gray, rgba_path, palette, cmyk, deep):
        img = load_image(p)
        assert img.mode == "RGB" and img.size == (8, 6), p
    assert load_image(gray).getpixel((0, 0)) == (100, 100, 100)
    assert load_image(rgba_path).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(palette).getpixel((0, 0)) == (10, 200, 30)
    assert load_image(deep).getpixel((0, 0)) == (127, 127, 127)
    r, g, b = load_image(cmyk).getpixel((0, 0))
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 255, 255, 0) is red


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    viewed = load_image(path)
    assert viewed.size == (20, 40)
    assert viewed.getpixel((10, 2))[0] > 200 and viewed.getpixel((10, 38))[0] < 50  # stripe now on top
    stored = load_image(path, exif_orientation=False)  # the grid dataset boxes refer to (evaluation)
    assert stored.size == (40, 20) and stored.getpixel((2, 10))[0] > 200 and stored.getpixel((38, 10))[0] < 50


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
        (lambda p: (p.write_text("hello, not a picture"), p)[1], "not an image"),
    ],
)
def test_unusable_files(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path / "bad.jpg")
    with pytest.raises(InputError, match=reason) as err:
        load_image(path)
    assert "bad.jpg" in str(err.value) and "\n" not in str(err.value)


def test_truncated_file(tmp_path: Path) -> None:
    good = save(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), tmp_path / "full.png"
    )
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match="cut.png: corrupt or truncated"):  # noqa: RUF043
        load_image(cut)


def test_folder_and_huge_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)
    path = save(Image.new("RGB", (300, 200)), tmp_path / "big.png")
    monkeypatch.setattr(io, "MAX_PIXELS", 10_000)
    with pytest.raises(InputError, match="big.png: image too large"):  # noqa: RUF043
        load_image(path)


def test_tiny_image(tmp_path: Path) -> None:
    assert load_image(save(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "px.png")).size == (1, 1)


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:  # noqa: PT012
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    io.write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'


def test_iter_image_paths_recurses_and_keeps_named_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in io.iter_image_paths([tmp_path])]
    assert found == ["b.png", "sub/a.jpg"]
    assert list(io.iter_image_paths([tmp_path / "notes.txt"])) == [tmp_path / "notes.txt"]


def test_bytes_decoder_shares_the_file_rules(tmp_path: Path) -> None:
    """`decode_image_bytes` (uploads) gives the pixels `load_image` gives, and the same errors, naming `name`."""
    rotated = Image.fromarray(np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = save(rotated, tmp_path / "rot.jpg", exif=exif, quality=100)
    from_bytes = io.decode_image_bytes(path.read_bytes(), "upload.jpg")
    assert from_bytes.size == (6, 8) and np.array_equal(np.asarray(from_bytes), np.asarray(load_image(path)))
    rgba = save(Image.new("RGBA", (4, 3), (255, 0, 0, 0)), tmp_path / "a.png")
    assert np.asarray(io.decode_image_bytes(rgba.read_bytes(), "a.png")).tolist() == [[[255] * 3] * 4] * 3
    with pytest.raises(io.NotAnImageError, match=r"^notes\.txt: not an image file"):
        io.decode_image_bytes(b"plain text", "notes.txt")
    with pytest.raises(InputError, match=r"^e\.png: empty file$"):
        io.decode_image_bytes(b"", "e.png")
    with pytest.raises(InputError, match=r"^cut\.png: corrupt or truncated image"):
        io.decode_image_bytes(path.read_bytes()[: path.stat().st_size // 2], "cut.png")
    big = save(Image.new("RGB", (300, 200)), tmp_path / "big.png").read_bytes()
    with pytest.raises(
        io.ImageTooLargeError, match=r"^big\.png: image too large .*300x200 pixels, the limit is 10,000"
    ):
        io.decode_image_bytes(big, "big.png", max_pixels=10_000)
    assert io.decode_image_bytes(big, "big.png", max_pixels=60_000).size == (300, 200)
