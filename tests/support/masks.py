"""Masks as the tests write them into COCO files: the JSON-ready compressed RLE of a bool mask."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def rle_of(mask: np.ndarray) -> dict[str, Any]:
    """Return the compressed RLE (`size` [h, w], `counts` str) of one [h, w] bool mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}
