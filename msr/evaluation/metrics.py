"""The one registry of metric keys and their titles: logging, the end-of-run table and msr-aggregate use it.

Keys are `<family><name>`: the families `bbox/` and `segm/` hold COCOeval's 12 statistics
(`COCO_STATS`) and the per-class `AP-<category name>`; `segm_upper_bound/` and `segm_class_score/`
the 12 statistics of the same segm results re-ranked (see `coco_eval.rescoring_metrics`); `calib/`
the MaskIoU calibration figures (see `calibration`). `RESCORING_GAIN` is derived per run by
msr-aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: COCOeval's 12 summary statistics, in the order of its `stats` array.
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
#: The average-precision statistics among them.
AP_STATS = COCO_STATS[:6]

#: Key prefixes of the metric families.
BBOX = "bbox/"
SEGM = "segm/"
UPPER_BOUND = "segm_upper_bound/"
CLASS_SCORE = "segm_class_score/"
CALIB = "calib/"

#: Per-run derived metric: segm AP minus the segm AP of the same masks ranked by class score alone.
RESCORING_GAIN = "segm_rescoring_gain/AP"

#: One human title per key.
TITLES: dict[str, str] = {
    **{f"{family}{name}": f"{family[:-1]} {name}" for family in (BBOX, SEGM) for name in COCO_STATS},
    f"{CLASS_SCORE}AP": "segm AP, class score only",
    f"{UPPER_BOUND}AP": "segm AP, true-IoU upper bound",
    RESCORING_GAIN: "rescoring gain (segm AP)",
    f"{RESCORING_GAIN}_low": "rescoring gain, 95% interval low",
    f"{RESCORING_GAIN}_high": "rescoring gain, 95% interval high",
    f"{CALIB}num_detections": "detections",
    f"{CALIB}num_matched": "matched detections",
    f"{CALIB}num_unmatched": "unmatched detections",
    f"{CALIB}mean_true_iou": "mean true IoU of matched detections",
    f"{CALIB}pearson_class_score": "Pearson(true IoU, class score)",
    f"{CALIB}spearman_class_score": "Spearman(true IoU, class score)",
    f"{CALIB}pearson_mask_score": "Pearson(true IoU, mask score)",
    f"{CALIB}spearman_mask_score": "Spearman(true IoU, mask score)",
    f"{CALIB}pearson_pred_iou": "Pearson(true IoU, predicted IoU)",
    f"{CALIB}spearman_pred_iou": "Spearman(true IoU, predicted IoU)",
    f"{CALIB}mae_pred_iou": "MAE of predicted IoU",
    f"{CALIB}num_positive": "positive detections (true IoU >= 0.5)",
    **{
        f"{CALIB}{name}_positive": f"{base} over positives"
        for name, base in (
            ("pearson_class_score", "Pearson(true IoU, class score)"),
            ("spearman_class_score", "Spearman(true IoU, class score)"),
            ("pearson_mask_score", "Pearson(true IoU, mask score)"),
            ("spearman_mask_score", "Spearman(true IoU, mask score)"),
            ("pearson_pred_iou", "Pearson(true IoU, predicted IoU)"),
            ("spearman_pred_iou", "Spearman(true IoU, predicted IoU)"),
            ("mae_pred_iou", "MAE of predicted IoU"),
        )
    },
}

#: Rows of the end-of-run table (`tables.metrics_table`), in order.
SUMMARY_KEYS = (
    f"{BBOX}AP",
    f"{SEGM}AP",
    f"{SEGM}AP50",
    f"{SEGM}AP75",
    f"{CLASS_SCORE}AP",
    RESCORING_GAIN,
    f"{UPPER_BOUND}AP",
    f"{CALIB}pearson_class_score",
    f"{CALIB}pearson_mask_score",
    f"{CALIB}spearman_class_score",
    f"{CALIB}spearman_mask_score",
    f"{CALIB}pearson_pred_iou",
    f"{CALIB}mae_pred_iou",
    f"{CALIB}num_matched",
    f"{CALIB}pearson_pred_iou_positive",
    f"{CALIB}num_positive",
)

#: Columns of msr-aggregate's study table, in order.
STUDY_KEYS = (
    f"{SEGM}AP",
    f"{BBOX}AP",
    f"{SEGM}AP75",
    f"{CALIB}pearson_class_score",
    f"{CALIB}pearson_mask_score",
    f"{CALIB}spearman_class_score",
    f"{CALIB}spearman_mask_score",
    f"{CALIB}pearson_pred_iou_positive",
    f"{CLASS_SCORE}AP",
    RESCORING_GAIN,
    f"{UPPER_BOUND}AP",
)

# the summary statistics that are logged, and the prefixes of the logged families
_LOGGED_KEYS = frozenset(f"{family}{name}" for family in (BBOX, SEGM) for name in AP_STATS)
_LOGGED_PREFIXES = (CALIB, f"{UPPER_BOUND}AP", f"{CLASS_SCORE}AP", RESCORING_GAIN)


def title(key: str) -> str:
    """Return the title of metric `key` (the key itself when it has none)."""
    return TITLES.get(key, key)


def is_logged(key: str) -> bool:
    """Return True for a metric that goes to the experiment logger.

    Logged: the 6 AP statistics of `bbox/` and `segm/`, every `calib/` key, and the keys starting
    with `segm_upper_bound/AP` or `segm_class_score/AP`; per-class APs and the AR statistics are not.
    """
    return key in _LOGGED_KEYS or key.startswith(_LOGGED_PREFIXES)


def logged_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Return `{prefix + key: float(value)}` for the logged keys of `metrics` with a finite number value."""
    return {
        prefix + key: float(value)
        for key, value in metrics.items()
        if is_logged(key) and isinstance(value, (int, float)) and math.isfinite(value)
    }
