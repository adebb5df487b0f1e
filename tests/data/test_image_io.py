"""Image modes are converted to 8-bit RGB; bad files give errors naming them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msr.data.image_io import load_rgb_image, read_image_size
from msr.errors import DatasetError


def _save(tmp_path: Path, name: str, image: Image.Image) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = load_rgb_image(_save(tmp_path, "gray.png", Image.fromarray(gray, mode="L")))
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], gray) for c in range(3))


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0  # fully transparent
    rgb = load_rgb_image(_save(tmp_path, "rgba.png", Image.fromarray(rgba, mode="RGBA")))
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [10, 20, 30]


def test_palette_is_expanded(tmp_path: Path) -> None:
    image = Image.new("P", (3, 2))
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image.putpixel((1, 1), 1)
    rgb = load_rgb_image(_save(tmp_path, "palette.png", image))
    assert rgb[1, 1].tolist() == [200, 100, 50] and rgb[0, 0].tolist() == [0, 0, 0]


def test_16_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = _save(tmp_path, "deep.png", Image.fromarray(values))
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # really stored as 16 bit
    rgb = load_rgb_image(path)
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]  # v / 257, full range kept
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_missing_and_garbage_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(DatasetError, match=r"nope\.jpg"):
        load_rgb_image(missing)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a picture" * 10)
    with pytest.raises(DatasetError, match=r"garbage\.jpg"):
        load_rgb_image(garbage)
    with pytest.raises(DatasetError, match=r"garbage\.jpg"):
        read_image_size(garbage)
    assert read_image_size(_save(tmp_path, "ok.png", Image.new("RGB", (5, 3)))) == (3, 5)
