"""COCO-sized instance annotation files for benchmarks, and their miniature COCO 2017 layout for tests.

The numbers follow COCO 2017 (`COCO_TRAIN_IMAGES` / `COCO_VAL_IMAGES` pictures of at most 640 px,
~7.3 instances per picture with a long tail and ~1% of pictures without any, 80 categories with
COCO's ids and a skewed frequency, ~41/34/25% small/medium/large objects): star-shaped polygons of
8 to 48 vertices rounded to 0.01 px like COCO's (~8% of instances in 2 or 3 parts), and ~1% crowd
regions as uncompressed RLE. The pictures are no real photographs: the benchmarks need none
(`pictures="empty"` writes zero-byte files so the data set finds them), tests get small JPEGs with
the instances painted in (`pictures="jpeg"`).

Deterministic: every chunk of `CHUNK` pictures has its own random stream seeded by
`(seed, split, chunk)`, so the same arguments give byte-identical files; the annotations are written
chunk by chunk (`coco_like_annotations` yields one chunk at a time), so writing the train split
needs little memory. The files are written by `msr.data.coco_like_files`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

COCO_TRAIN_IMAGES = 118_287
COCO_VAL_IMAGES = 5_000
#: COCO's 80 category ids (1..90 with gaps).
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
CHUNK = 1_000
#: Bump whenever the files written for given arguments change.
GENERATOR_VERSION = 1
_SPLIT_CODES = {"train": 0, "val": 1}
PICTURES = ("none", "empty", "jpeg")


def _instance_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return [n] instances per picture: 1% empty, else 1 + negative binomial (mean ~7.3), at most 93."""
    counts = 1 + rng.negative_binomial(1.6, 1.6 / (1.6 + 6.4), size=n)
    counts[rng.random(n) < 0.01] = 0
    return np.minimum(counts, 93)


def _category_weights() -> np.ndarray:
    """Return the sampling weights of the 80 categories: 'person' ~30%, the rest Zipf-like."""
    weights = 1.0 / np.arange(1, 80) ** 0.9
    weights = np.concatenate([[weights.sum() * 0.43], weights])
    return weights / weights.sum()


def _polygons(rng: np.random.Generator, cx, cy, rx, ry, k, h, w) -> tuple[np.ndarray, np.ndarray]:
    """Return star-shaped polygons around (cx, cy) with radii about (rx, ry) and k vertices, clipped to
    the h x w picture and rounded to 0.01: (coords [n, 2 * max k] as x0, y0, x1, ..., valid [n, max k])."""
    n, k_max = len(k), int(k.max(initial=1))
    j = np.arange(k_max)[None, :]
    angles = 2 * np.pi * (j + rng.uniform(-0.3, 0.3, (n, k_max))) / k[:, None]
    radius = np.clip(1 + rng.normal(0, 0.15, (n, k_max)), 0.5, 1.5)
    xs = np.round(np.clip(cx[:, None] + rx[:, None] * radius * np.cos(angles), 0, w[:, None]), 2)
    ys = np.round(np.clip(cy[:, None] + ry[:, None] * radius * np.sin(angles), 0, h[:, None]), 2)
    return np.stack([xs, ys], axis=2).reshape(n, 2 * k_max), j < k[:, None]


def _area_and_extent(coords: np.ndarray, valid: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the shoelace areas [n] and the extents [n, 4] (x0, y0, x1, y1) of `_polygons`' output."""
    xs, ys = coords[:, 0::2], coords[:, 1::2]
    rows = np.arange(len(k))[:, None]
    following = (np.arange(xs.shape[1])[None, :] + 1) % k[:, None]
    cross = np.where(valid, xs * ys[rows, following] - ys * xs[rows, following], 0.0)
    extent = np.stack(
        [
            np.where(valid, xs, np.inf).min(axis=1),
            np.where(valid, ys, np.inf).min(axis=1),
            np.where(valid, xs, -np.inf).max(axis=1),
            np.where(valid, ys, -np.inf).max(axis=1),
        ],
        axis=1,
    )
    return 0.5 * np.abs(cross.sum(axis=1)), extent


def _crowd_rle(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, h: int, w: int):
    """Return (uncompressed RLE dict, area, bbox xywh) of an elliptic crowd region (column-major runs)."""
    x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 1)
    xs = np.arange(x0, x1)
    half = ry * np.sqrt(np.clip(1 - ((xs + 0.5 - cx) / rx) ** 2, 0, 1)) * rng.uniform(0.8, 1.0, len(xs))
    top = np.clip(np.round(cy - half), 0, h).astype(np.int64)
    bottom = np.clip(np.round(cy + half), 0, h).astype(np.int64)
    bottom = np.maximum(bottom, top)
    starts, lengths = xs * h + top, bottom - top
    counts, position = [], 0
    for start, length in zip(starts.tolist(), lengths.tolist()):
        if length == 0:
            continue
        counts += [start - position, length]
        position = start + length
    counts.append(h * w - position)
    if len(counts) == 1:  # an empty region: one pixel so the crowd region exists
        counts = [0, 1, h * w - 1]
    filled = lengths > 0
    ys = (int(top[filled].min()), int(bottom[filled].max())) if filled.any() else (0, 1)
    xs_on = xs[filled] if filled.any() else np.array([0])
    bbox = [float(xs_on.min()), float(ys[0]), float(xs_on.max() + 1 - xs_on.min()), float(ys[1] - ys[0])]
    return {"size": [h, w], "counts": counts}, float(max(int(lengths.sum()), 1)), bbox


def _instances(rng: np.random.Generator, h: np.ndarray, w: np.ndarray, crowd: np.ndarray) -> list[dict]:
    """Return the geometry (`segmentation`, `area`, `bbox`, `iscrowd`) of instances in pictures h x w."""
    n = len(h)
    kind = rng.choice(3, size=n, p=[0.41, 0.34, 0.25])  # small, medium, large
    low = np.array([16.0, 1024.0, 9216.0])[kind]
    high = np.maximum(np.array([1024.0, 9216.0, np.inf])[kind].clip(max=0.5 * h * w), low + 1)
    area = np.exp(rng.uniform(np.log(low), np.log(high)))
    stretch = np.exp(rng.normal(0, 0.35, n))
    rx, ry = np.sqrt(area / np.pi) * stretch, np.sqrt(area / np.pi) / stretch
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    k = rng.integers(np.array([8, 16, 24])[kind], np.array([21, 33, 49])[kind])
    coords, valid = _polygons(rng, cx, cy, rx, ry, k, h, w)
    areas, extents = _area_and_extent(coords, valid, k)
    # occluded objects: 2 or 3 parts; part p of instance owner[p] lies near it at half its size
    owner = np.flatnonzero(rng.random(n) < 0.08)
    owner = np.sort(np.concatenate([owner, owner[rng.random(len(owner)) < 0.5]]))
    part_k = rng.integers(6, 17, len(owner))
    dx, dy = rng.normal(0, 1.5, len(owner)) * rx[owner], rng.normal(0, 1.5, len(owner)) * ry[owner]
    part_coords, part_valid = _polygons(
        rng, cx[owner] + dx, cy[owner] + dy, rx[owner] / 2, ry[owner] / 2, part_k, h[owner], w[owner]
    )
    part_areas, part_extents = _area_and_extent(part_coords, part_valid, part_k)
    np.add.at(areas, owner, part_areas)
    np.minimum.at(extents[:, :2], owner, part_extents[:, :2])
    np.maximum.at(extents[:, 2:], owner, part_extents[:, 2:])
    boxes = np.round(np.concatenate([extents[:, :2], extents[:, 2:] - extents[:, :2]], axis=1), 2).tolist()
    areas = np.round(areas, 2).tolist()
    extra: dict[int, list[list[float]]] = {}
    for i, p in enumerate(owner.tolist()):
        extra.setdefault(p, []).append(part_coords[i, : 2 * part_k[i]].tolist())
    out = []
    for i in range(n):
        if crowd[i]:
            rle, a, box = _crowd_rle(
                rng, cx[i], cy[i], max(rx[i], 2.0), max(ry[i], 2.0), int(h[i]), int(w[i])
            )
            out.append({"segmentation": rle, "area": a, "bbox": box, "iscrowd": 1})
            continue
        segmentation = [coords[i, : 2 * k[i]].tolist(), *extra.get(i, [])]
        out.append({"segmentation": segmentation, "area": areas[i], "bbox": boxes[i], "iscrowd": 0})
    return out


def coco_like_images(num_images: int, seed: int, split: str, max_side: int = 640) -> list[dict[str, Any]]:
    """Return the `images` records of a split: unique random ids, COCO file names, sizes <= `max_side`."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], 1 << 20])
    ids = rng.choice(600_000, size=num_images, replace=False) + 1
    short = np.round(
        max_side * rng.choice([0.5625, 0.667, 0.75, 0.8, 1.0], num_images, p=[0.1, 0.3, 0.4, 0.1, 0.1])
    )
    landscape = rng.random(num_images) < 0.7
    heights = np.where(landscape, short, max_side).astype(int)
    widths = np.where(landscape, max_side, short).astype(int)
    return [
        {"id": int(i), "file_name": f"{int(i):012d}.jpg", "height": int(hh), "width": int(ww)}
        for i, hh, ww in zip(ids, heights, widths)
    ]


def coco_like_annotations(
    images: list[dict[str, Any]], seed: int, split: str, crowd_fraction: float = 0.01
) -> Iterator[list[dict[str, Any]]]:
    """Yield the `annotations` records of `images` chunk by chunk (`CHUNK` pictures each); ids from 1."""
    weights = _category_weights()
    next_id = 1
    for start in range(0, len(images), CHUNK):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], start // CHUNK])
        chunk = images[start : start + CHUNK]
        counts = _instance_counts(rng, len(chunk))
        owners = np.repeat(np.arange(len(chunk)), counts)
        h = np.array([image["height"] for image in chunk], dtype=np.float64)[owners]
        w = np.array([image["width"] for image in chunk], dtype=np.float64)[owners]
        cats = rng.choice(COCO_CATEGORY_IDS, size=len(owners), p=weights).tolist()
        crowd = rng.random(len(owners)) < crowd_fraction
        geometry = _instances(rng, h, w, crowd)
        anns = [
            {"id": next_id + i, "image_id": chunk[o]["id"], "category_id": c, **g}
            for i, (o, c, g) in enumerate(zip(owners.tolist(), cats, geometry))
        ]
        next_id += len(anns)
        yield anns
