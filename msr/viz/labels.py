"""Captions that people can read on pictures of any size: text scaled to the picture, a filled background
behind each label, labels kept inside the picture and moved off each other where they would overlap."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Text height as a fraction of the picture's short side, and its bounds in pixels.
TEXT_FRACTION = 1 / 40
MIN_TEXT_PX, MAX_TEXT_PX = 11, 64
#: Pictures whose short side is below this are enlarged (nearest neighbour) before anything is drawn.
MIN_PICTURE_SIDE = 512

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


def text_size_for(height: int, width: int) -> int:
    """Return the text height in pixels for a picture of `height` x `width`."""
    return int(np.clip(round(min(height, width) * TEXT_FRACTION), MIN_TEXT_PX, MAX_TEXT_PX))


def enlargement_for(height: int, width: int, min_side: int = MIN_PICTURE_SIDE) -> int:
    """Return the whole factor that brings the short side of a picture to at least `min_side` (1: none)."""
    return max(1, -(-min_side // max(1, min(height, width))))


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Return Pillow's bundled font at `size` pixels (its fixed bitmap font on Pillow without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default()


def place_labels(
    anchors: Sequence[tuple[float, float, float, float]],
    sizes: Sequence[tuple[int, int]],
    height: int,
    width: int,
) -> list[Rect]:
    """Return one rectangle per label: above the top-left corner of its box `anchors[i]` (xyxy), inside
    the box when there is no room above, shifted to stay inside the [height, width] picture, and moved down
    (then up) past labels already placed where it would overlap them, when the picture has room.

    `sizes[i]`: the label's (width, height) in pixels, background included.
    """
    placed: list[Rect] = []
    for (x0, y0, _x1, _y1), (w, h) in zip(anchors, sizes):
        left = int(np.clip(round(x0), 0, max(0, width - w)))
        top = round(y0) - h if round(y0) - h >= 0 else round(y0)
        top = int(np.clip(top, 0, max(0, height - h)))
        rect = (left, top, left + w, top + h)
        for candidate in _candidates(rect, height):
            if not any(_overlap(candidate, other) for other in placed):
                rect = candidate
                break
        placed.append(rect)
    return placed


def _candidates(rect: Rect, height: int, tries: int = 8) -> list[Rect]:
    """Return `rect`, then `rect` moved down and up by whole label heights, inside the picture."""
    x0, y0, x1, y1 = rect
    h = y1 - y0
    moves = [k * h for k in range(1, tries + 1)] + [-k * h for k in range(1, tries + 1)]
    out = [rect]
    for dy in moves:
        if y0 + dy >= 0 and y1 + dy <= height:
            out.append((x0, y0 + dy, x1, y1 + dy))
    return out


def _overlap(a: Rect, b: Rect) -> bool:
    """Return True when the rectangles share any pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_labels(
    picture: np.ndarray,
    anchors: Sequence[tuple[float, float, float, float]],
    texts: Sequence[str],
    colors: Sequence[tuple[int, int, int]],
) -> np.ndarray:
    """Return [H, W, 3] uint8: `picture` with each text on a filled background of its colour (white or
    black text, whichever reads better on it) at its box `anchors[i]` (xyxy), placed by `place_labels`."""
    if not texts:
        return picture
    height, width = picture.shape[:2]
    size = text_size_for(height, width)
    face = font(size)
    pad = max(1, size // 5)
    canvas = Image.fromarray(np.ascontiguousarray(picture))
    draw = ImageDraw.Draw(canvas)
    boxes = [draw.textbbox((0, 0), text, font=face) for text in texts]
    sizes = [(min(width, b[2] - b[0] + 2 * pad), min(height, b[3] - b[1] + 2 * pad)) for b in boxes]
    for rect, text, color, box in zip(place_labels(anchors, sizes, height, width), texts, colors, boxes):
        draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=tuple(color))
        ink = (0, 0, 0) if _luminance(color) > 140 else (255, 255, 255)
        draw.text((rect[0] + pad - box[0], rect[1] + pad - box[1]), text, font=face, fill=ink)
    return np.asarray(canvas)


def caption_height(height: int, width: int) -> int:
    """Return the height in pixels of the caption strip `caption_strip` puts above such a picture."""
    size = text_size_for(height, width)
    return size + 2 * max(2, size // 3)


def caption_strip(picture: np.ndarray, text: str) -> np.ndarray:
    """Return `picture` with a white strip above it holding `text` in black, sized to the picture."""
    width = picture.shape[1]
    size = text_size_for(*picture.shape[:2])
    face = font(size)
    pad = max(2, size // 3)
    strip = Image.new("RGB", (width, caption_height(*picture.shape[:2])), (255, 255, 255))
    ImageDraw.Draw(strip).text((pad, pad), text, font=face, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), picture], axis=0)


def _luminance(color: Sequence[int]) -> float:
    """Return the perceived brightness (0-255) of an RGB colour."""
    r, g, b = color[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b
