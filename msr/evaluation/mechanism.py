"""Why the MaskIoU rescoring helps (or not): oracle rankings, partial correlation and AUCs of one run.

From a run's saved segm results (each with its `class_score` and predicted `mask_iou`) and the
annotations, with no retraining:

- **oracle rankings** of the same masks, segm AP when the mask score is the class score times
  - `[true IoU > 0]`: detections that touch no ground truth of their class are demoted, nothing else;
  - `[true IoU >= 0.5]`: unmatched detections (no ground truth at IoU 0.5) demoted, nothing else;
  - the true IoU on matched detections, unmatched ones left at the class score: quality only, the paper's
    mechanism (ranking correct masks by how good they are);
  - the true IoU everywhere (the upper bound, paper Table 7);
  - the true IoU degraded by Gaussian noise to the head's own Pearson over positives (what a head as
    well calibrated as this one, but unbiased, could give);
- the **partial correlation** of the predicted and the true IoU given the class score (what the head
  knows about mask quality that the class score does not), over positives and over all detections;
- the **AUC** with which the class score, the predicted IoU and the mask score separate matched
  (true IoU >= 0.5) from unmatched detections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from msr.errors import EvaluationError
from msr.evaluation.bootstrap import coco_ap, evaluate_per_image
from msr.evaluation.calibration import POSITIVE_IOU, CalibrationData, calibration_data, pearson
from msr.evaluation.ground_truth import GroundTruthLike
from msr.evaluation.results import ResultsLike, load_results

#: Noise draws averaged for the degraded oracle.
DEGRADED_DRAWS = 5


def partial_correlation(x: np.ndarray, y: np.ndarray, given: np.ndarray) -> float:
    """Return the partial Pearson correlation of x and y given `given` (NaN when undefined)."""
    r_xy, r_xz, r_yz = pearson(x, y), pearson(x, given), pearson(y, given)
    denominator = (1 - r_xz**2) * (1 - r_yz**2)
    if any(math.isnan(r) for r in (r_xy, r_xz, r_yz)) or denominator <= 0:
        return float("nan")
    return float((r_xy - r_xz * r_yz) / math.sqrt(denominator))


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Return the area under the ROC curve of `score` separating `positive` from the rest (ties count
    half; the Mann-Whitney statistic); NaN without both kinds."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _ap(
    results: list[dict], scores: np.ndarray, gt: GroundTruthLike, img_ids: Sequence[int] | None
) -> float:
    """Return the segm AP of `results` ranked by `scores`."""
    rescored = [{**r, "score": float(s)} for r, s in zip(results, scores)]
    return coco_ap(evaluate_per_image(rescored, gt, "segm", img_ids))


def degraded_iou(data: CalibrationData, target: float, rng: np.random.Generator) -> np.ndarray:
    """Return the true IoU plus Gaussian noise whose Pearson with the true IoU over positives is about
    `target`: noise SD = SD(true IoU over positives) · sqrt(1 / target² - 1)."""
    positives = data.true_iou >= POSITIVE_IOU
    spread = float(np.std(data.true_iou[positives])) if positives.any() else 0.0
    noise = spread * math.sqrt(max(1.0 / target**2 - 1.0, 0.0)) if target > 0 else 0.0
    return data.true_iou + rng.normal(0.0, noise, size=data.true_iou.shape[0])


def mechanism(
    results: ResultsLike, gt: GroundTruthLike, img_ids: Sequence[int] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Return the diagnostics of one run's segm results (see the module's text) as a flat dict: `AP ...`
    keys (segm AP of each ranking), `partial r ...`, `AUC ...`, `Pearson ...` and the counts."""
    results, _ = load_results(results)
    data = calibration_data(results, gt)
    if np.isnan(data.pred_iou).all():
        raise EvaluationError("results without a predicted IoU (mask_iou): a Mask R-CNN run has no rescoring")
    matched = data.true_iou >= POSITIVE_IOU
    cls, true = data.class_score, data.true_iou
    head_r = pearson(data.pred_iou[matched], true[matched])
    rng = np.random.default_rng(seed)

    def ap(scores: np.ndarray) -> float:
        """The segm AP of the results ranked by `scores`."""
        return _ap(results, scores, gt, img_ids)

    draws = DEGRADED_DRAWS if head_r > 0 else 0  # NaN or no positive Pearson: nothing to degrade to
    degraded = [ap(cls * degraded_iou(data, head_r, rng)) for _ in range(draws)]
    out: dict[str, Any] = {
        "detections": int(true.shape[0]),
        "matched (true IoU >= 0.5)": int(matched.sum()),
        "touching no ground truth (true IoU = 0)": int((true == 0).sum()),
        "AP mask score": ap(data.mask_score),
        "AP class score": ap(cls),
        "AP oracle: class x [true IoU > 0]": ap(cls * (true > 0)),
        "AP oracle: class x [true IoU >= 0.5]": ap(cls * matched),
        "AP oracle: class x true IoU on matched only": ap(np.where(matched, cls * true, cls)),
        "AP oracle: class x true IoU": ap(cls * true),
        "AP oracle: class x true IoU degraded to the head's Pearson": (
            float(np.mean(degraded)) if degraded else float("nan")
        ),
        "Pearson(predicted, true IoU) over matched": head_r,
        "partial r(predicted, true IoU | class score) over matched": partial_correlation(
            data.pred_iou[matched], true[matched], cls[matched]
        ),
        "partial r(predicted, true IoU | class score) over all": partial_correlation(
            data.pred_iou, true, cls
        ),
        "AUC matched vs unmatched: class score": auc(cls, matched),
        "AUC matched vs unmatched: predicted IoU": auc(data.pred_iou, matched),
        "AUC matched vs unmatched: mask score": auc(data.mask_score, matched),
    }
    return out
