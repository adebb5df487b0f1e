"""COCO evaluation for msr: predictions → COCO results, cross-rank gathering, COCOeval, MaskIoU calibration.

Pure PyTorch / pycocotools / faster-coco-eval: no Lightning or Hydra, so scripts and tests can use it alone.
"""

from msr.evaluation.calibration import (
    CalibrationData,
    calibration_data,
    calibration_metrics,
    class_score_results,
    compute_calibration,
    pearson,
    spearman,
    true_mask_ious,
    upper_bound_results,
)
from msr.evaluation.coco_eval import (
    STAT_NAMES,
    evaluate_coco,
    format_coco_table,
    rescoring_metrics,
    score_results_file,
)
from msr.evaluation.distributed import broadcast_object, dedupe_by_image, gather_results
from msr.evaluation.errors import EvaluationError
from msr.evaluation.evaluator import COCOEvaluator
from msr.evaluation.ground_truth import BACKENDS, load_ground_truth, make_coco
from msr.evaluation.json_io import load_json, load_results, save_json_atomic
from msr.evaluation.results import IOU_TYPES, check_results, encode_masks, predictions_to_coco

__all__ = [
    "BACKENDS",
    "IOU_TYPES",
    "STAT_NAMES",
    "COCOEvaluator",
    "CalibrationData",
    "EvaluationError",
    "broadcast_object",
    "calibration_data",
    "calibration_metrics",
    "check_results",
    "class_score_results",
    "compute_calibration",
    "dedupe_by_image",
    "encode_masks",
    "evaluate_coco",
    "format_coco_table",
    "gather_results",
    "load_ground_truth",
    "load_json",
    "load_results",
    "make_coco",
    "pearson",
    "predictions_to_coco",
    "rescoring_metrics",
    "save_json_atomic",
    "score_results_file",
    "spearman",
    "true_mask_ious",
    "upper_bound_results",
]
