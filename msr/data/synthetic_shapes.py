"""Rendering of the synthetic pictures: textured backgrounds and six kinds of overlapping shapes.

The shapes are chosen to make mask quality vary: rings (holes, thin bands), stars (non-convex, thin
spikes), crosses (thin arms), crescents (non-convex), ellipses and triangles. Later objects occlude
earlier ones; an occluded instance's mask is its visible part, and instances left with a tiny visible
part are not drawn. Everything is drawn from the random stream it is given, in a fixed order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

#: Category names; category id ``i + 1`` is ``CATEGORY_NAMES[i]``.
CATEGORY_NAMES: tuple[str, ...] = ("ring", "star", "cross", "crescent", "ellipse", "triangle")


# -- shapes --------------------------------------------------------------------------------------
# Each shape function gets local coordinates (u, v) of pixel centres, rotated into the shape's
# frame and centred on it, and a radius r in pixels; it returns a boolean mask.


def _polygon_mask(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Return which points (u, v) lie inside the polygon ``vertices`` [K, 2] (even-odd rule)."""
    inside = np.zeros(u.shape, dtype=bool)
    x0, y0 = vertices[-1]
    for x1, y1 in vertices:
        crosses = (y1 > v) != (y0 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < x_at)
        x0, y0 = x1, y1
    return inside


def _ellipse(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    b = r * rng.uniform(0.45, 1.0)
    return (u / r) ** 2 + (v / b) ** 2 <= 1.0


def _ring(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    b = r * rng.uniform(0.7, 1.0)
    inner = rng.uniform(0.45, 0.8)
    q = (u / r) ** 2 + (v / b) ** 2
    return (q <= 1.0) & (q >= inner**2)


def _crescent(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    offset = r * rng.uniform(0.35, 0.7)
    cut = r * rng.uniform(0.75, 1.0)
    return (u**2 + v**2 <= r**2) & ((u - offset) ** 2 + v**2 > cut**2)


def _cross(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    half_thickness = r * rng.uniform(0.1, 0.3)
    vertical = r * rng.uniform(0.6, 1.0)
    shift = r * rng.uniform(-0.5, 0.5)  # where the vertical bar crosses: + or T-like
    horizontal_bar = (np.abs(u) <= r) & (np.abs(v) <= half_thickness)
    vertical_bar = (np.abs(v) <= vertical) & (np.abs(u - shift) <= half_thickness)
    return horizontal_bar | vertical_bar


def _star(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    points = int(rng.integers(5, 9))
    inner = rng.uniform(0.35, 0.6)
    angles = np.arange(2 * points) * (math.pi / points)
    radii = np.where(np.arange(2 * points) % 2 == 0, r, r * inner)
    vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return _polygon_mask(u, v, vertices)


def _triangle(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    angles = np.arange(3) * (2 * math.pi / 3) + rng.uniform(-0.35, 0.35, size=3)
    radii = r * rng.uniform(0.7, 1.0, size=3)
    vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return _polygon_mask(u, v, vertices)


_SHAPES: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray, float], np.ndarray]] = {
    "ring": _ring,
    "star": _star,
    "cross": _cross,
    "crescent": _crescent,
    "ellipse": _ellipse,
    "triangle": _triangle,
}


def _shape_mask(rng: np.random.Generator, name: str, height: int, width: int, diameter: float) -> np.ndarray:
    """Return the full-image boolean mask of one randomly placed and rotated shape."""
    r = diameter / 2.0
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    theta = rng.uniform(0, 2 * math.pi)
    mask = np.zeros((height, width), dtype=bool)
    y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, height)
    x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, width)
    if y1 <= y0 or x1 <= x0:
        return mask
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy  # pixel centres relative to the shape centre
    u = math.cos(theta) * dx + math.sin(theta) * dy
    v = -math.sin(theta) * dx + math.cos(theta) * dy
    mask[y0:y1, x0:x1] = _SHAPES[name](rng, u, v, r)
    return mask


# -- appearance -----------------------------------------------------------------------------------


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return xs, ys


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Return an [H, W, 3] float texture: gradient, stripes, smooth noise or blobs."""
    xs, ys = _grid(height, width)
    c1, c2 = rng.uniform(0, 255, size=(2, 3))
    kind = int(rng.integers(4))
    if kind == 0:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        t = xs * math.cos(angle) + ys * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return c1 * (1 - t[..., None]) + c2 * t[..., None]
    if kind == 1:  # stripes
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 24)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
        return c1 * (1 - t[..., None]) + c2 * t[..., None]
    if kind == 2:  # smooth colour noise
        cells = int(rng.integers(3, 9))
        small = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
        return np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), dtype=np.float64)
    image = np.broadcast_to(c1, (height, width, 3)).copy()  # blobs on a flat colour
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(0.05, 0.25) * min(height, width)
        weight = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))[..., None]
        image = image * (1 - weight) + rng.uniform(0, 255, size=3) * weight
    return image


def _object_texture(
    rng: np.random.Generator, background_colour: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Return [N, 3] float colours for an object's pixels at ``(xs, ys)``, contrasting with the background.

    The fill is flat, shaded across the object, or finely striped.
    """
    colour = rng.uniform(0, 255, size=3)
    for _ in range(20):
        if np.linalg.norm(colour - background_colour) >= 90:
            break
        colour = rng.uniform(0, 255, size=3)
    kind = int(rng.integers(3))
    if kind == 0:
        return np.broadcast_to(colour, (xs.size, 3))
    angle = rng.uniform(0, 2 * math.pi)
    other = np.clip(colour + rng.uniform(-60, 60, size=3), 0, 255)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    if kind == 1:  # shading across the object
        t = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    else:  # fine stripes
        t = 0.5 + 0.5 * np.sin(2 * math.pi * along / rng.uniform(3, 8))
    return colour * (1 - t[:, None]) + other * t[:, None]


def render_picture(
    rng: np.random.Generator, params: dict[str, Any]
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Return one picture as [H, W, 3] uint8 and its instances as ``(category_id, visible_mask)``.

    Instances are listed bottom to top; masks are [H, W] bool visible parts.
    """
    height, width = params["image_size"]
    image = _background(rng, height, width)
    num_objects = int(rng.integers(params["min_objects"], params["max_objects"] + 1))
    log_lo, log_hi = math.log(params["min_object_size"]), math.log(params["max_object_size"])
    objects = []
    for _ in range(num_objects):
        category = int(rng.integers(len(CATEGORY_NAMES)))
        diameter = math.exp(rng.uniform(log_lo, log_hi)) * min(height, width)
        objects.append((category + 1, _shape_mask(rng, CATEGORY_NAMES[category], height, width, diameter)))

    # From the top object down: keep an instance only if enough of it stays visible.
    covered = np.zeros((height, width), dtype=bool)
    kept: list[tuple[int, np.ndarray, np.ndarray]] = []
    for category_id, full in reversed(objects):
        visible = full & ~covered
        area = int(visible.sum())
        if area >= max(params["min_visible_area"], params["min_visible_fraction"] * int(full.sum())):
            kept.append((category_id, full, visible))
            covered |= full
    kept.reverse()

    for _category_id, full, _visible in kept:  # paint bottom to top
        ys, xs = np.nonzero(full)
        image[ys, xs] = _object_texture(rng, image[ys, xs].mean(axis=0), xs.astype(float), ys.astype(float))
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.0))))
    noisy = np.asarray(picture, dtype=np.float64) + rng.normal(0, rng.uniform(0, 8), size=(height, width, 3))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), [(c, vis) for c, _f, vis in kept]
