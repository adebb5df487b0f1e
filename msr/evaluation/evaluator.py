"""A stateful COCO evaluator for validation loops (Lightning-free): bind, update per batch, compute once."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from msr.distributed import broadcast_object, gather_results, get_rank, is_distributed
from msr.errors import EvaluationError
from msr.evaluation.ground_truth import GroundTruthLike, make_coco, normalize_backend
from msr.evaluation.memo import EvaluationMemo
from msr.evaluation.results import IOU_TYPES, ImageResults, LabelMap, image_results
from msr.evaluation.scoring import EvaluationResult, evaluate_results, gc_paused


class COCOEvaluator:
    """Collects per-image model outputs as COCO results and evaluates them (bbox, segm, calibration).

    Built from options alone (e.g. from config, before the data is known); `bind` then gives it the
    ground truth and the label → category map. `update` converts outputs to RLE results at once, so
    no mask tensor is kept. `compute` gathers the results of all ranks to rank 0 (dropping images a
    DistributedSampler padded in), evaluates there with `scoring.evaluate_results` and returns the
    metrics on every rank. Only the images seen by `update` are evaluated.

    Metric keys: `bbox/*`, `segm/*` (see `coco_eval`), `calib/*` (see `calibration`) when `calibration`,
    when `upper_bound`, `segm_upper_bound/*` (the 12 COCO stats with the true IoU as MaskIoU, paper
    Table 7) and, for MS R-CNN results, `segm_class_score/*` (ranked by class score alone); see
    `coco_eval.rescoring_metrics`, and the rescoring gain with its 95% interval from `bootstrap`
    replicates (`scoring.rescoring_gain`). `print_tables`: rank 0 prints the COCO tables.
    """

    def __init__(
        self,
        backend: str = "faster_coco_eval",
        iou_types: Sequence[str] = IOU_TYPES,
        calibration: bool = True,
        upper_bound: bool = False,
        per_class: bool = True,
        mask_threshold: float = 0.5,
        print_tables: bool = False,
        bootstrap: int = 1000,
    ) -> None:
        self.iou_types = tuple(iou_types)
        bad = [t for t in self.iou_types if t not in IOU_TYPES]
        if bad:
            raise EvaluationError(f"unknown iou types {bad}; choose from {list(IOU_TYPES)}")
        if (calibration or upper_bound) and "segm" not in self.iou_types:
            raise EvaluationError("calibration and upper_bound need 'segm' in iou_types")
        self.backend = normalize_backend(backend)
        self.calibration = calibration
        self.upper_bound = upper_bound
        self.per_class = per_class
        self.mask_threshold = mask_threshold
        self.print_tables = print_tables
        self.bootstrap = int(bootstrap)
        self.gt: GroundTruthLike | None = None
        self.label_to_cat_id: LabelMap | None = None
        self.memo: EvaluationMemo | None = (
            None  # shared by the evaluators of a head pass (msr.evaluation.memo)
        )
        self._coco_gt: Any = None  # built from self.gt on rank 0 at the first compute
        self.reset()

    def bind(self, gt: GroundTruthLike, label_to_cat_id: LabelMap) -> COCOEvaluator:
        """Set the ground truth and the label map; return self.

        `gt`: annotation file path, dataset dict or COCO object; its COCO object is built on rank 0 at
        the next `compute` and kept while the same `gt` (the same path, or the same object) is bound.
        `label_to_cat_id`: K category ids (label k ↦ ids[k-1]) or a {label: category id} mapping.
        """
        if not _same_ground_truth(gt, self.gt):
            self._coco_gt = None
        self.gt = gt
        self.label_to_cat_id = label_to_cat_id
        return self

    def reset(self) -> None:
        """Forget every result collected so far."""
        # image id → its results (dicts built by `local_results`); an image seen twice on one rank keeps
        # its last results
        self._per_image: dict[int, ImageResults] = {}

    def _require_bound(self) -> None:
        """Raise EvaluationError unless `bind` was called."""
        if self.gt is None or self.label_to_cat_id is None:
            raise EvaluationError("COCOEvaluator: call bind(gt, label_to_cat_id) before update or compute")

    def update(self, outputs: Sequence[Mapping[str, Any]], image_ids: Sequence[int]) -> None:
        """Convert one batch of per-image model outputs (original image coordinates) to COCO results."""
        self._require_bound()
        if len(outputs) != len(image_ids):
            raise EvaluationError(f"update got {len(outputs)} outputs for {len(image_ids)} image ids")
        for output, image_id in zip(outputs, image_ids):
            image_id = int(image_id)
            if "segm" not in self.iou_types:  # no mask encoding nobody asked for
                output = {k: v for k, v in output.items() if k != "masks"}
            self._per_image[image_id] = image_results(
                output, image_id, self.label_to_cat_id, self.mask_threshold
            )

    @property
    def num_images(self) -> int:
        """Return how many distinct images this rank has collected."""
        return len(self._per_image)

    def local_results(self, iou_type: str) -> list[dict[str, Any]]:
        """Return this rank's COCO results of `iou_type` ('bbox' or 'segm')."""
        if iou_type not in IOU_TYPES:
            raise EvaluationError(f"unknown iou type {iou_type!r}; choose from {list(IOU_TYPES)}")
        return [r for record in self._per_image.values() for r in record.results(iou_type)]

    @gc_paused()  # the gather unpickles every rank's results: millions of objects on rank 0
    def compute(self) -> EvaluationResult:
        """Return the EvaluationResult (collective: all ranks must call it).

        Every rank gets the metrics; `results`, `image_ids` and `calibration` are filled on rank 0
        only (None elsewhere). Rank 0 gathers, evaluates and broadcasts the metrics; if it fails there,
        rank 0 raises the error and every other rank a RuntimeError that repeats it.
        """
        self._require_bound()
        gathered = {t: gather_results(self.local_results(t), list(self._per_image)) for t in self.iou_types}
        result: EvaluationResult | None = None
        outcome: Any = None
        error: Exception | None = None
        if not is_distributed() or get_rank() == 0:
            results = {t: res for t, (res, _) in gathered.items()}
            image_ids = gathered[self.iou_types[0]][1]
            try:
                result = self._evaluate(results, image_ids)
                outcome = ("ok", result.metrics)
            except Exception as e:  # tell the other ranks, so that they do not wait forever
                error = e
                outcome = ("error", f"{type(e).__name__}: {e}")
        status, payload = broadcast_object(outcome)
        if error is not None:
            raise error
        if status == "error":
            raise RuntimeError(f"COCO evaluation failed on rank 0: {payload}")
        return result if result is not None else EvaluationResult(payload)

    def _evaluate(self, results: dict[str, list[dict]], image_ids: list[int]) -> EvaluationResult:
        """Return the EvaluationResult of the gathered `results` over `image_ids` (rank 0 only)."""
        if self._coco_gt is None:
            self._coco_gt = make_coco(self.gt, self.backend)
        return evaluate_results(
            results,
            self._coco_gt,
            backend=self.backend,
            img_ids=image_ids,
            per_class=self.per_class,
            calibration=self.calibration,
            upper_bound=self.upper_bound,
            bootstrap=self.bootstrap,
            print_fn=print if self.print_tables else None,
            memo=self.memo,
        )


def _same_ground_truth(a: GroundTruthLike | None, b: GroundTruthLike | None) -> bool:
    """Return True when `a` and `b` are the same object or name the same file."""
    if a is b:
        return True
    paths = (str, os.PathLike)
    return isinstance(a, paths) and isinstance(b, paths) and Path(a) == Path(b)
