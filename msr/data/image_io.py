"""Reading images from disk as 8-bit RGB, whatever their mode (grayscale, RGBA, palette, 16-bit), as stored
or turned upright by their EXIF orientation (which reading is used where: msr.data.orientation)."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from msr.errors import DatasetError

#: File extensions treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# PIL modes holding unsigned 16-bit samples.
_UINT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}

#: The EXIF tag of the orientation.
ORIENTATION_TAG = 0x0112
_T = getattr(Image, "Transpose", Image)  # Pillow < 9.1: module constants
#: For each EXIF orientation (2-8), the transposition that turns the stored pixels upright.
UPRIGHT = {
    2: _T.FLIP_LEFT_RIGHT,
    3: _T.ROTATE_180,
    4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE,
    6: _T.ROTATE_270,
    7: _T.TRANSVERSE,
    8: _T.ROTATE_90,
}
#: For each EXIF orientation (2-8), the transposition that turns the upright picture back as stored.
STORED = {**UPRIGHT, 6: _T.ROTATE_90, 8: _T.ROTATE_270}
#: The orientations that turn a picture by a quarter (its width and height swap when upright).
QUARTER_TURNS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class PictureHeader:
    """What a picture's header says: its stored size and its EXIF orientation (1: upright as stored)."""

    height: int
    width: int
    orientation: int = 1

    @property
    def tagged(self) -> bool:
        """Return True when the picture must be turned or mirrored to be seen upright."""
        return self.orientation != 1

    def size(self, upright: bool) -> tuple[int, int]:
        """Return ``(height, width)`` as stored, or (``upright``) once turned by its orientation."""
        if upright and self.orientation in QUARTER_TURNS:
            return self.width, self.height
        return self.height, self.width


def exif_orientation(image: Image.Image) -> int:
    """Return the EXIF orientation (1-8) of an opened picture, 1 when it has no valid one.

    Read from what opening the file gave (the EXIF block of a JPEG, TIFF or WebP, a PNG's eXIf chunk before
    its pixels), never by decoding the pixels, so that a header read and a full read agree.
    """
    try:
        value = Image.Image.getexif(image).get(ORIENTATION_TAG)  # not PNG's override: it decodes the pixels
        orientation = int(value) if value is not None else 1
    except Exception:  # a damaged EXIF block: the picture is read as stored
        return 1
    return orientation if orientation in UPRIGHT else 1


@functools.cache
def _pillow_turns_tiffs() -> bool:
    """Return True when this Pillow turns TIFF pictures upright itself (size and pixels; recent ones do)."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    Image.new("L", (2, 1)).save(buffer, format="TIFF", exif=exif.tobytes())
    with Image.open(buffer) as probe:
        return probe.size == (1, 2)


def _turned_by_pillow(image: Image.Image, orientation: int) -> bool:
    """Return True when Pillow reports and decodes the opened picture already turned upright (TIFF)."""
    return orientation != 1 and image.format == "TIFF" and _pillow_turns_tiffs()


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
    EXIF orientation is not applied here (``load_rgb_image(..., upright=True)`` does).
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


def load_rgb_image(path: str | Path, upright: bool = False) -> np.ndarray:
    """Return the image at ``path`` as an [H, W, 3] uint8 RGB array: as stored, or with ``upright`` turned
    (and mirrored) as its EXIF orientation says, as viewers and annotation tools show it.

    Raises:
        DatasetError: naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            orientation = exif_orientation(image)  # before load(): Pillow drops a TIFF's when it turns it
            by_pillow = _turned_by_pillow(image, orientation)
            image.load()
            if by_pillow and not upright:
                return pil_to_rgb_array(image.transpose(STORED[orientation]))
            if upright and orientation != 1 and not by_pillow:
                return pil_to_rgb_array(image.transpose(UPRIGHT[orientation]))
            return pil_to_rgb_array(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image file {path}: {exc}") from exc


def read_picture_header(path: str | Path) -> PictureHeader:
    """Return the stored size and the EXIF orientation of the picture at ``path``, reading only its header.

    Raises:
        DatasetError: naming the file when it is missing or not a recognised image.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = exif_orientation(image)
            if _turned_by_pillow(image, orientation) and orientation in QUARTER_TURNS:
                width, height = height, width  # Pillow gave the upright size: the stored one is swapped
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image file {path}: {exc}") from exc
    return PictureHeader(int(height), int(width), orientation)


def read_image_size(path: str | Path, upright: bool = False) -> tuple[int, int]:
    """Return ``(height, width)`` of the image at ``path`` as stored, or (``upright``) once turned by its
    EXIF orientation, reading only its header.

    Raises:
        DatasetError: naming the file when it is missing or not a recognised image.
    """
    return read_picture_header(path).size(upright)
