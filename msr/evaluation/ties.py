"""Tied scores in a COCO ranking: how many there are, and how far AP can move with the order among them.

COCOeval ranks a category's detections by score with a stable sort, so detections of equal score keep
the order of their pictures (and, within a picture, of the results file): an arbitrary order, which a
class score that saturates (softmax scores of 1.0) makes part of the ranking. `tie_bounds` gives the AP
with every tie broken against the true positives and in their favour: a rule that favours neither
ranking is anywhere in between, and when the two bounds agree the ties do not move the AP.
"""

from __future__ import annotations

import numpy as np

from msr.evaluation.bootstrap import RECALL_THRESHOLDS, CategoryEval, PerImageEval


def tied_detections(evaluation: PerImageEval) -> int:
    """Return the number of detections whose score equals that of another detection of their category."""
    tied = 0
    for category in evaluation.categories:
        _, counts = np.unique(category.det_score, return_counts=True)
        tied += int(counts[counts > 1].sum())
    return tied


def _threshold_precision(tp: np.ndarray, fp: np.ndarray, num_gt: int) -> float:
    """Return the mean interpolated precision at COCOeval's 101 recall thresholds of one ranking ([D] bool
    true and false positives in ranked order)."""
    tp_sum, fp_sum = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
    recall = tp_sum / num_gt
    precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    reached = np.searchsorted(RECALL_THRESHOLDS, recall, side="right")
    taken = np.diff(reached, prepend=0)
    return float((precision * taken).sum() / RECALL_THRESHOLDS.shape[0])


def _category_bound(category: CategoryEval, favour_true_positives: bool) -> float:
    """Return one category's mean interpolated precision over the IoU thresholds, each threshold's ties
    broken for (or against) its true positives."""
    num_gt = int(category.num_gt.sum())
    total = 0.0
    for tp, fp in zip(category.tp, category.fp):
        second = -tp.astype(np.int8) if favour_true_positives else tp.astype(np.int8)
        order = np.lexsort((second, -category.det_score))
        total += _threshold_precision(tp[order], fp[order], num_gt)
    return total / category.tp.shape[0]


def tie_bounds(evaluation: PerImageEval) -> tuple[float, float]:
    """Return (AP with every tie of scores broken against the true positives, AP with every tie broken in
    their favour), AP@[.5:.95] over the categories with ground truth (COCOeval's AP lies between)."""
    low, high, counted = 0.0, 0.0, 0
    for category in evaluation.categories:
        if category.num_gt.sum() == 0:
            continue
        counted += 1
        if category.det_score.shape[0] == 0:
            continue
        low += _category_bound(category, False)
        high += _category_bound(category, True)
    if counted == 0:
        return -1.0, -1.0
    return low / counted, high / counted
