"""Loading COCO ground truth once and building the COCO object each evaluation backend wants."""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msr.evaluation.errors import EvaluationError
from msr.evaluation.json_io import load_json

BACKENDS = ("faster_coco_eval", "pycocotools")

# what a user may pass as ground truth: a path, an already-parsed dataset dict, or a COCO object of
# either library (anything with a `.dataset` dict).
GroundTruthLike = str | os.PathLike | Mapping[str, Any] | Any


def normalize_backend(backend: str) -> str:
    """Return the canonical backend name ('faster_coco_eval' or 'pycocotools'); EvaluationError otherwise."""
    name = str(backend).strip().lower().replace("-", "_")
    if name in ("faster_coco_eval", "faster"):
        return "faster_coco_eval"
    if name == "pycocotools":
        return "pycocotools"
    raise EvaluationError(f"unknown COCO evaluation backend {backend!r}; choose one of {list(BACKENDS)}")


def load_ground_truth(gt: GroundTruthLike) -> dict[str, Any]:
    """Return the COCO ground-truth dataset dict from a path, a dict or a COCO object, checked for shape.

    A dict or COCO object is returned as is (not copied); a path is read with errors naming the file.
    """
    source = "ground truth"
    if isinstance(gt, (str, os.PathLike)):
        source = f"annotation file {Path(gt)}"
        dataset = load_json(gt, what="annotation file")
    elif isinstance(gt, Mapping):
        dataset = gt
    elif isinstance(getattr(gt, "dataset", None), dict):
        dataset = gt.dataset
    else:
        raise EvaluationError(
            f"ground truth must be a path, a COCO dataset dict or a COCO object, got {type(gt).__name__}"
        )
    if not isinstance(dataset, Mapping):
        raise EvaluationError(f"{source}: top level must be a JSON object, got {type(dataset).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise EvaluationError(f"{source}: missing or non-list key {key!r}")
    for i, img in enumerate(dataset["images"]):
        for key in ("id", "height", "width"):
            if not isinstance(img, Mapping) or key not in img:
                raise EvaluationError(f"{source}: images[{i}] has no key {key!r}")
    for i, cat in enumerate(dataset["categories"]):
        for key in ("id", "name"):
            if not isinstance(cat, Mapping) or key not in cat:
                raise EvaluationError(f"{source}: categories[{i}] has no key {key!r}")
    for i, ann in enumerate(dataset["annotations"]):
        for key in ("id", "image_id", "category_id"):
            if not isinstance(ann, Mapping) or key not in ann:
                raise EvaluationError(f"{source}: annotations[{i}] has no key {key!r}")
    return dataset if isinstance(dataset, dict) else dict(dataset)


def make_coco(gt: GroundTruthLike, backend: str = "faster_coco_eval") -> Any:
    """Return a COCO ground-truth object of `backend`'s own class (`gt` itself if it is one), built silently.

    A COCO object of the other library is converted through a deep copy of its dataset, because both
    libraries' COCOeval write into the annotation dicts they are given.
    """
    backend = normalize_backend(backend)
    coco_cls = _coco_class(backend)
    if isinstance(gt, coco_cls):
        return gt
    dataset = load_ground_truth(gt)
    if hasattr(gt, "dataset"):
        dataset = copy.deepcopy(dataset)
    if backend == "faster_coco_eval":
        return coco_cls(dataset, print_function=_silent)
    coco = coco_cls()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _coco_class(backend: str) -> type:
    """Return the COCO class of the canonical `backend`."""
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO
    else:
        from pycocotools.coco import COCO
    return COCO


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """Swallow faster-coco-eval's progress messages."""
