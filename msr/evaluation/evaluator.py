"""A stateful COCO evaluator for validation loops (Lightning-free): update per batch, compute once."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from msr.evaluation.calibration import CalibrationData, compute_calibration
from msr.evaluation.coco_eval import evaluate_coco, rescoring_metrics
from msr.evaluation.distributed import broadcast_object, gather_results, get_rank
from msr.evaluation.errors import EvaluationError
from msr.evaluation.ground_truth import GroundTruthLike, make_coco, normalize_backend
from msr.evaluation.json_io import save_json_atomic
from msr.evaluation.results import IOU_TYPES, LabelMap, predictions_to_coco


class COCOEvaluator:
    """Collects per-image model outputs as COCO results and evaluates them (bbox, segm, calibration).

    `update` converts outputs to RLE results at once, so no mask tensor is kept. `compute` gathers the
    results of all ranks to rank 0 (dropping images a DistributedSampler padded in), evaluates there
    and returns the same metrics dict on every rank. Only the images seen by `update` are evaluated.

    Metric keys: `bbox/*`, `segm/*` (see `coco_eval`), `calib/*` (see `calibration`) when `calibration`,
    when `upper_bound`, `segm_upper_bound/*` (the 12 COCO stats with the true IoU as MaskIoU, paper
    Table 7) and, for MS R-CNN results, `segm_class_score/*` (ranked by class score alone); see
    `coco_eval.rescoring_metrics`.
    """

    def __init__(
        self,
        gt: GroundTruthLike,
        label_to_cat_id: LabelMap,
        backend: str = "faster_coco_eval",
        iou_types: Sequence[str] = IOU_TYPES,
        calibration: bool = True,
        upper_bound: bool = False,
        per_class: bool = True,
        results_dir: str | os.PathLike | None = None,
        mask_threshold: float = 0.5,
        print_fn: Callable[[str], Any] | None = None,
    ) -> None:
        """Set up for `gt` (annotation file path, dataset dict or COCO object; loaded lazily on rank 0).

        `label_to_cat_id`: K category ids (label k ↦ ids[k-1]) or a {label: category id} mapping.
        `results_dir`: if given, rank 0 writes `bbox_results.json` / `segm_results.json` there (atomically).
        `print_fn`: if given, rank 0 prints the COCO tables with it.
        """
        self.iou_types = tuple(iou_types)
        bad = [t for t in self.iou_types if t not in IOU_TYPES]
        if bad:
            raise EvaluationError(f"unknown iou types {bad}; choose from {list(IOU_TYPES)}")
        if (calibration or upper_bound) and "segm" not in self.iou_types:
            raise EvaluationError("calibration and upper_bound need 'segm' in iou_types")
        self.gt = gt
        self.label_to_cat_id = label_to_cat_id
        self.backend = normalize_backend(backend)
        self.calibration = calibration
        self.upper_bound = upper_bound
        self.per_class = per_class
        self.results_dir = Path(results_dir) if results_dir is not None else None
        self.mask_threshold = mask_threshold
        self.print_fn = print_fn
        self._coco_gt: Any = None
        # per-detection arrays of the last compute, for plots (rank 0 only)
        self.calibration_data: CalibrationData | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every result collected so far."""
        # image id → (bbox results, segm results); an image seen twice on one rank keeps its last results
        self._per_image: dict[int, tuple[list[dict], list[dict]]] = {}

    def update(self, outputs: Sequence[Mapping[str, Any]], image_ids: Sequence[int]) -> None:
        """Convert one batch of per-image model outputs (original image coordinates) to COCO results."""
        if len(outputs) != len(image_ids):
            raise EvaluationError(f"update got {len(outputs)} outputs for {len(image_ids)} image ids")
        for output, image_id in zip(outputs, image_ids):
            image_id = int(image_id)
            if "segm" not in self.iou_types:  # no mask encoding nobody asked for
                output = {k: v for k, v in output.items() if k != "masks"}
            self._per_image[image_id] = predictions_to_coco(
                output, image_id, self.label_to_cat_id, self.mask_threshold
            )

    @property
    def num_images(self) -> int:
        """Return how many distinct images this rank has collected."""
        return len(self._per_image)

    def local_results(self, iou_type: str) -> list[dict[str, Any]]:
        """Return this rank's COCO results of `iou_type` ('bbox' or 'segm')."""
        k = IOU_TYPES.index(iou_type)
        return [r for pair in self._per_image.values() for r in pair[k]]

    def compute(self) -> dict[str, float]:
        """Return the metrics dict on every rank (collective: all ranks must call it).

        Rank 0 gathers, evaluates and broadcasts; if it fails there, every rank raises the same error.
        """
        gathered = {t: gather_results(self.local_results(t), list(self._per_image)) for t in self.iou_types}
        outcome: Any = None
        error: Exception | None = None
        if get_rank() == 0:
            results = {t: res for t, (res, _) in gathered.items()}
            image_ids = gathered[self.iou_types[0]][1]
            try:
                outcome = ("ok", self._evaluate(results, image_ids))
            except Exception as e:  # tell the other ranks, so that they do not wait forever
                error = e
                outcome = ("error", f"{type(e).__name__}: {e}")
        status, payload = broadcast_object(outcome)
        if error is not None:
            raise error
        if status == "error":
            raise RuntimeError(f"COCO evaluation failed on rank 0: {payload}")
        return payload

    def _evaluate(self, results: dict[str, list[dict]], image_ids: list[int]) -> dict[str, float]:
        """Return the metrics of the gathered `results` over `image_ids` (rank 0 only)."""
        if self._coco_gt is None:
            self._coco_gt = make_coco(self.gt, self.backend)
        coco_gt = self._coco_gt
        if self.results_dir is not None:
            for t, res in results.items():
                save_json_atomic(res, self.results_dir / f"{t}_results.json")
        metrics: dict[str, float] = {}
        for t, res in results.items():
            metrics.update(
                evaluate_coco(
                    res,
                    coco_gt,
                    t,
                    self.backend,
                    img_ids=image_ids,
                    per_class=self.per_class,
                    print_fn=self.print_fn,
                )
            )
        if self.calibration or self.upper_bound:
            calib, self.calibration_data = compute_calibration(results["segm"], coco_gt)
            if self.calibration:
                metrics.update(calib)
            if self.upper_bound:
                true_iou = self.calibration_data.true_iou
                metrics.update(rescoring_metrics(results["segm"], coco_gt, true_iou, self.backend, image_ids))
        return metrics
