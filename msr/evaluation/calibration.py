"""MaskIoU calibration: how well mask scores track the true mask IoU, and the paper's upper bound.

For each segm detection, its **true IoU** is its best mask IoU with a non-crowd ground-truth instance of
the same category in the same image (0 when there is none). A detection is *matched* when its true IoU
is > 0. Over matched detections we report:

- `calib/num_detections`, `calib/num_matched`, `calib/num_unmatched`, `calib/mean_true_iou`;
- `calib/pearson_class_score`, `calib/spearman_class_score`: true IoU vs the box/class score;
- only when detections carry a predicted IoU (`mask_iou`, MS R-CNN): `calib/pearson_mask_score`,
  `calib/spearman_mask_score` (true IoU vs class score × predicted IoU, the segm `score`),
  `calib/pearson_pred_iou`, `calib/spearman_pred_iou` (true vs predicted IoU; the paper reports ≈0.74)
  and `calib/mae_pred_iou` (mean |predicted − true| IoU, the predicted IoU clipped to [0, 1] first: an
  IoU lies there, and an untrained head's raw regression far outside it would say nothing about the
  detections; the correlations and the mask scores use the raw output, as the paper does).

These are over every detection that overlaps a ground truth ("any overlap", true IoU > 0). The same
correlations and MAE over *positives* only, detections whose true IoU is ≥ 0.5 (the population of the
paper's Pearson 0.74), carry the suffix `_positive` (`calib/pearson_pred_iou_positive`, ...), with
`calib/num_positive` counting them.

Degenerate cases: a correlation over fewer than 2 points or over a constant input is NaN, and so are
the mean IoU and MAE over no point. Results without `class_score` use `score` as the class score.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from scipy import stats

from msr.data.segmentation import segmentation_to_rle
from msr.errors import EvaluationError
from msr.evaluation.ground_truth import GroundTruthLike, load_ground_truth
from msr.evaluation.metrics import CALIB
from msr.evaluation.results import ResultsLike, check_results, load_results

#: A detection is a *positive* when its true IoU is at least this (the paper's correlation of 0.74 is over
#: positives); the `*_positive` metrics are computed over positives only.
POSITIVE_IOU = 0.5
POSITIVE = "_positive"


@dataclass(frozen=True)
class CalibrationData:
    """Per-detection arrays, in the order of the segm results, for plots (all [D] float64)."""

    true_iou: np.ndarray  # best mask IoU with a same-class non-crowd GT, 0 when none
    class_score: np.ndarray  # box/class score
    pred_iou: np.ndarray  # predicted mask IoU, NaN where the detection has none (Mask R-CNN)
    mask_score: np.ndarray  # the segm `score` (class score × predicted IoU for MS R-CNN)

    @property
    def matched(self) -> np.ndarray:
        """Return the [D] bool mask of detections that overlap a same-class GT (true IoU > 0)."""
        return self.true_iou > 0


def true_mask_ious(results: ResultsLike, gt: GroundTruthLike) -> np.ndarray:
    """Return [D] float64: each segm result's best mask IoU with a same-class non-crowd GT of its image."""
    dataset = load_ground_truth(gt)
    results, source = load_results(results)
    images = {img["id"]: img for img in dataset["images"]}
    sizes = {i: (img["height"], img["width"]) for i, img in images.items()}
    check_results(results, "segm", sizes, [c["id"] for c in dataset["categories"]], source)

    by_pair: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    for i, res in enumerate(results):
        by_pair[res["image_id"], res["category_id"]].append(i)
    gt_by_pair: dict[tuple[Any, Any], list[dict]] = defaultdict(list)
    for ann in dataset["annotations"]:
        key = (ann["image_id"], ann["category_id"])
        if key in by_pair and not ann.get("iscrowd", 0):
            gt_by_pair[key].append(ann)

    true_iou = np.zeros(len(results), dtype=np.float64)
    for key, det_idx in by_pair.items():
        anns = gt_by_pair.get(key)
        if not anns:
            continue
        h, w = sizes[key[0]]
        gt_rles = [_ann_to_rle(ann, h, w) for ann in anns]
        dt_rles = [results[i]["segmentation"] for i in det_idx]
        ious = np.asarray(mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles)))  # [d, g]
        true_iou[det_idx] = ious.max(axis=1)
    return true_iou


def calibration_data(
    results: ResultsLike, gt: GroundTruthLike, true_iou: np.ndarray | None = None
) -> CalibrationData:
    """Return the per-detection CalibrationData of segm `results` (true IoUs computed unless given)."""
    results, _ = load_results(results)
    if true_iou is None:
        true_iou = true_mask_ious(results, gt)
    class_score = np.array([r.get("class_score", r["score"]) for r in results], dtype=np.float64)
    pred = [r.get("mask_iou") for r in results]
    pred_iou = np.array([np.nan if p is None else p for p in pred], dtype=np.float64)
    mask_score = np.array([r["score"] for r in results], dtype=np.float64)
    return CalibrationData(np.asarray(true_iou, dtype=np.float64), class_score, pred_iou, mask_score)


def calibration_metrics(data: CalibrationData, prefix: str = CALIB) -> dict[str, float]:
    """Return the flat calibration metrics dict (keys in the module docstring) of `data`."""
    m = data.matched
    t = data.true_iou[m]
    out = {
        "num_detections": float(len(data.true_iou)),
        "num_matched": float(m.sum()),
        "num_unmatched": float((~m).sum()),
        "mean_true_iou": float(t.mean()) if t.size else float("nan"),
        "pearson_class_score": pearson(t, data.class_score[m]),
        "spearman_class_score": spearman(t, data.class_score[m]),
    }
    has_pred = ~np.isnan(data.pred_iou)
    if has_pred.any():
        out.update(_predicted_iou_metrics(data, m & has_pred))
    positive = data.true_iou >= POSITIVE_IOU
    out["num_positive"] = float(positive.sum())
    out.update(
        {f"{k}{POSITIVE}": v for k, v in _correlations(data, positive, ("class_score",)).items()}
    )
    if has_pred.any():
        out.update(
            {f"{k}{POSITIVE}": v for k, v in _predicted_iou_metrics(data, positive & has_pred).items()}
        )
    return {prefix + k: v for k, v in out.items()}


def _correlations(data: CalibrationData, selected: np.ndarray, scores: tuple[str, ...]) -> dict[str, float]:
    """Return Pearson's and Spearman's correlation of the true IoU with each named score over `selected`."""
    t = data.true_iou[selected]
    out: dict[str, float] = {}
    for name in scores:
        values = getattr(data, name)[selected]
        out[f"pearson_{name}"] = pearson(t, values)
        out[f"spearman_{name}"] = spearman(t, values)
    return out


def _predicted_iou_metrics(data: CalibrationData, selected: np.ndarray) -> dict[str, float]:
    """Return the mask-score and predicted-IoU correlations and the predicted IoU's MAE over `selected`."""
    t = data.true_iou[selected]
    out = _correlations(data, selected, ("mask_score", "pred_iou"))
    predicted = np.clip(data.pred_iou[selected], 0.0, 1.0)  # an IoU; the raw regression can leave [0, 1]
    out["mae_pred_iou"] = float(np.abs(predicted - t).mean()) if t.size else float("nan")
    return out


def compute_calibration(
    results: ResultsLike, gt: GroundTruthLike, prefix: str = CALIB
) -> tuple[dict[str, float], CalibrationData]:
    """Return (calibration metrics dict, per-detection CalibrationData) of segm `results` against `gt`."""
    data = calibration_data(results, gt)
    return calibration_metrics(data, prefix), data


def upper_bound_results(
    results: ResultsLike, gt: GroundTruthLike, true_iou: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Return copies of segm `results` rescored as the paper's upper bound (Table 7).

    Each copy's `score` becomes class score × true IoU (an oracle MaskIoU head) and its `true_iou` key
    holds the true IoU; pass `true_iou` to reuse IoUs already computed by `true_mask_ious`.
    """
    results, _ = load_results(results)
    if true_iou is None:
        true_iou = true_mask_ious(results, gt)
    if len(true_iou) != len(results):
        raise EvaluationError(f"true_iou has {len(true_iou)} entries for {len(results)} results")
    return [
        {**r, "score": float(r.get("class_score", r["score"])) * float(iou), "true_iou": float(iou)}
        for r, iou in zip(results, true_iou)
    ]


def class_score_results(results: ResultsLike) -> list[dict[str, Any]]:
    """Return copies of segm `results` scored by their class score alone (the MaskIoU rescoring undone).

    Applied to MS R-CNN results this ranks the very same masks as Mask R-CNN would, which isolates the
    gain of the rescoring from any change the MaskIoU loss made to the shared features.
    """
    results, _ = load_results(results)
    return [{**r, "score": float(r.get("class_score", r["score"]))} for r in results]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Return Pearson's r of x and y; NaN for fewer than 2 points or a constant input."""
    if _degenerate(x, y):
        return float("nan")
    return float(stats.pearsonr(x, y)[0])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Return Spearman's rank correlation of x and y; NaN for fewer than 2 points or a constant input."""
    if _degenerate(x, y):
        return float("nan")
    return float(stats.spearmanr(x, y)[0])


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    """Return True when a correlation of x and y is undefined (n < 2 or zero variance)."""
    return len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0


def _ann_to_rle(ann: Mapping[str, Any], h: int, w: int) -> dict[str, Any]:
    """Return the compressed RLE of a GT annotation's segmentation (polygons, raw RLE or compressed RLE)."""
    seg, name = ann.get("segmentation"), f"ground-truth annotation {ann.get('id')}"
    if isinstance(seg, (list, tuple)) and not seg:
        raise EvaluationError(f"{name} has an empty 'segmentation'")
    try:
        return segmentation_to_rle(seg, h, w)
    except ValueError:
        raise EvaluationError(f"{name} has no usable 'segmentation'") from None
