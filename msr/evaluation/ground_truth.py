"""Loading COCO ground truth once and building the COCO object each evaluation backend wants."""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msr.data.coco_json import validate_coco_instances
from msr.errors import EvaluationError
from msr.files import read_json

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
    """Return the COCO ground-truth dataset dict from a path, a dict or a COCO object, validated.

    A dict or COCO object is returned as is (not copied); a path is read with errors naming the file.
    The checks are `msr.data.coco_json.validate_coco_instances`'s without image file names or
    annotation geometry (EvaluationError naming the file and the key or record at fault).
    """
    source = "ground truth"
    if isinstance(gt, (str, os.PathLike)):
        source = f"annotation file {Path(gt)}"
        dataset = read_json(gt, what="annotation file", error=EvaluationError)
    elif isinstance(gt, Mapping):
        dataset = gt
    elif isinstance(getattr(gt, "dataset", None), dict):
        dataset = gt.dataset
    else:
        raise EvaluationError(
            f"ground truth must be a path, a COCO dataset dict or a COCO object, got {type(gt).__name__}"
        )
    return validate_coco_instances(dataset, source, require_files=False, error=EvaluationError)


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
