"""Reading images from disk as 8-bit RGB, whatever their mode (grayscale, RGBA, palette, 16-bit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from msr.errors import DatasetError

#: File extensions treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# PIL modes holding unsigned 16-bit samples.
_UINT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def _scale_to_uint8(array: np.ndarray, full_scale: float) -> np.ndarray:
    """Return ``array`` mapped linearly from [0, full_scale] to [0, 255] (rounded, never wrapped)."""
    scaled = np.rint(array.astype(np.float64) * (255.0 / full_scale))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """Return an [H, W] uint8 array from a 16-bit, 32-bit integer or float single-channel image.

    16-bit samples are divided by 257 (65535 -> 255), so the full 16-bit range maps onto the full
    8-bit range instead of being clipped at 255. 32-bit integer images whose values fit in 16 bits
    (PIL opens some 16-bit PNGs as mode "I") are treated as 16-bit; other ranges are min-max scaled.
    Float images in [0, 1] are multiplied by 255, others min-max scaled.
    """
    array = np.asarray(image)
    if image.mode in _UINT16_MODES:
        return _scale_to_uint8(array, 65535.0)
    array = array.astype(np.float64)
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if image.mode == "I" and lo >= 0 and hi <= 65535:
        return _scale_to_uint8(array, 65535.0)
    if image.mode == "F" and lo >= 0 and hi <= 1:
        return _scale_to_uint8(array, 1.0)
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.uint8)
    return _scale_to_uint8(array - lo, hi - lo)


def pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    """Return an [H, W, 3] uint8 RGB array from a PIL image of any common mode.

    Alpha channels are dropped (not composited), palettes are expanded, grayscale is replicated
    into three channels and 16-bit data are rescaled to 8 bit (see ``_high_depth_to_uint8``).
    EXIF orientation is not applied: COCO-style annotations refer to the stored pixel grid.
    """
    mode = image.mode
    if mode in _UINT16_MODES or mode in ("I", "F"):
        gray = _high_depth_to_uint8(image)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_rgb_image(path: str | Path) -> np.ndarray:
    """Return the image at ``path`` as an [H, W, 3] uint8 RGB array.

    Raises:
        DatasetError: naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_rgb_array(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image file {path}: {exc}") from exc


def read_image_size(path: str | Path) -> tuple[int, int]:
    """Return ``(height, width)`` of the image at ``path``, reading only its header.

    Raises:
        DatasetError: naming the file when it is missing or not a recognised image.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image file {path}: {exc}") from exc
    return int(height), int(width)
