"""Confidence intervals for COCO AP by a paired bootstrap over pictures.

A COCO evaluation is first split per picture (`evaluate_per_image`: pycocotools' own per-picture matching
of detections to ground truth, which does not depend on the other pictures). A bootstrap replicate draws
the val pictures with replacement and recomputes AP@[.5:.95] on that multiset exactly as COCOeval's
`accumulate` does (a picture drawn k times counts k times, with all its detections and ground truth);
with every picture drawn once it is COCOeval's AP. Paired comparisons draw the *same* pictures for both
sides (and for every seed), so what the pictures have in common cancels out.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from msr.errors import EvaluationError
from msr.evaluation.coco_eval import make_cocoeval
from msr.evaluation.ground_truth import GroundTruthLike, make_coco
from msr.evaluation.results import ResultsLike, load_results

#: COCOeval's recall thresholds (101 points).
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, 101)
#: Bootstrap replicates computed together (memory: chunk x 10 thresholds x detections of a category).
_CHUNK = 64


@dataclass(frozen=True)
class CategoryEval:
    """One category's per-picture matching: detections in picture order, each picture's by score."""

    num_gt: np.ndarray  # [N] non-ignored ground truths of each picture
    det_image: np.ndarray  # [D] index (into PerImageEval.image_ids) of each detection's picture
    det_score: np.ndarray  # [D]
    tp: np.ndarray  # [T, D] bool: matched at IoU threshold t and not ignored
    fp: np.ndarray  # [T, D] bool: unmatched and not ignored


@dataclass(frozen=True)
class PerImageEval:
    """A COCO evaluation (area all, 100 detections per picture) kept per picture and category."""

    image_ids: np.ndarray  # [N] sorted
    categories: tuple[CategoryEval, ...]
    category_ids: tuple[int, ...] = ()  # the ground truth's category ids, in the order of `categories`


def evaluate_per_image(
    results: ResultsLike, gt: GroundTruthLike, iou_type: str = "segm", img_ids: Sequence[int] | None = None
) -> PerImageEval:
    """Return the per-picture COCO matching of `results` against `gt` (pycocotools' evaluateImg).

    `img_ids`: the pictures that were evaluated (default: every picture of `gt`).
    """
    results, _ = load_results(results)
    coco_gt = make_coco(gt, "pycocotools")
    coco_eval = make_cocoeval(coco_gt, results, iou_type, "pycocotools", img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
    params = coco_eval.params
    image_ids = np.asarray(params.imgIds, dtype=np.int64)
    num_images, num_areas = len(image_ids), len(params.areaRng)
    categories = []
    for k in range(len(params.catIds)):
        start = k * num_areas * num_images  # area range "all" comes first
        evals = coco_eval.evalImgs[start : start + num_images]
        categories.append(_category_eval(evals, len(params.iouThrs)))
    return PerImageEval(image_ids, tuple(categories), tuple(int(c) for c in params.catIds))


def _category_eval(evals: Sequence[dict | None], num_thresholds: int) -> CategoryEval:
    """Return the CategoryEval of one category's per-picture evaluateImg records (None: nothing there)."""
    num_gt = np.zeros(len(evals), dtype=np.int64)
    det_image, scores, matched, ignored = [], [], [], []
    for i, record in enumerate(evals):
        if record is None:
            continue
        num_gt[i] = int(np.count_nonzero(np.asarray(record["gtIgnore"]) == 0))
        det_scores = np.asarray(record["dtScores"], dtype=np.float64)
        det_image.append(np.full(det_scores.shape[0], i, dtype=np.int64))
        scores.append(det_scores)
        matched.append(np.asarray(record["dtMatches"]).reshape(num_thresholds, -1) > 0)
        ignored.append(np.asarray(record["dtIgnore"]).reshape(num_thresholds, -1).astype(bool))
    if not scores:
        empty = np.zeros((num_thresholds, 0), dtype=bool)
        return CategoryEval(num_gt, np.zeros(0, np.int64), np.zeros(0), empty, empty)
    matched_all, ignored_all = np.concatenate(matched, axis=1), np.concatenate(ignored, axis=1)
    return CategoryEval(
        num_gt,
        np.concatenate(det_image),
        np.concatenate(scores),
        matched_all & ~ignored_all,
        ~matched_all & ~ignored_all,
    )


def coco_ap(evaluation: PerImageEval, counts: np.ndarray | None = None) -> float:
    """Return AP@[.5:.95] (area all, 100 detections) of the picture multiset `counts` ([N] draws per
    picture; None: every picture once, which is COCOeval's AP). -1 when no category has ground truth."""
    counts = np.ones(len(evaluation.image_ids), dtype=np.int64) if counts is None else np.asarray(counts)
    return float(replicate_aps(evaluation, counts[None], {})[0])


def _category_precisions(category: CategoryEval, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ([B] mean interpolated precision over the T x R grid, [B] has ground truth) of one category
    for every picture multiset of `draws` ([B, N]).

    COCOeval's accumulate on the multiset, computed with each detection weighted by how often its picture
    was drawn: the copies of a detection share its score, so they sit side by side in the ranking, and the
    precision/recall points between them never change the interpolated precision at a recall threshold
    (a true positive's copies only raise precision; a false positive's copies do not move recall).
    """
    num_gt = draws @ category.num_gt  # [B]
    has_gt = num_gt > 0
    num_dets = category.det_score.shape[0]
    means = np.zeros(draws.shape[0])
    if num_dets == 0:
        return means, has_gt
    order = np.argsort(-category.det_score, kind="mergesort")
    tp, fp = category.tp[:, order].astype(np.float64), category.fp[:, order].astype(np.float64)
    det_image = category.det_image[order]
    for start in range(0, draws.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        weights = draws[rows][:, det_image].astype(np.float64)[:, None, :]  # [b, 1, D]
        tp_sum = np.cumsum(weights * tp, axis=2)
        fp_sum = np.cumsum(weights * fp, axis=2)
        recall = tp_sum / np.maximum(num_gt[rows], 1)[:, None, None]
        precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
        precision = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
        # a recall threshold takes the precision of the first point whose recall reaches it: point i
        # takes the thresholds that point i - 1 had not reached yet
        reached = np.searchsorted(RECALL_THRESHOLDS, recall, side="right")
        taken = np.diff(reached, axis=2, prepend=0)
        means[rows] = (precision * taken).sum(axis=(1, 2)) / (recall.shape[1] * RECALL_THRESHOLDS.shape[0])
    return means, has_gt


def bootstrap_counts(num_images: int, replicates: int, seed: int = 0) -> np.ndarray:
    """Return [replicates, num_images] draw counts: each row picks num_images pictures with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=replicates)


@dataclass(frozen=True)
class Interval:
    """A statistic (typically a paired difference) with its 95% percentile bootstrap interval over pictures.

    `mean` is the mean of the bootstrap replicates (beside `estimate`, it shows the bootstrap's bias);
    `basic_low`/`basic_high` the basic (reverse-percentile) interval, a check on the percentile one;
    `borderline` is True when 0 lies within twice the Monte-Carlo error of an endpoint (more replicates
    could move the verdict); `p_value` the two-sided bootstrap p-value of "the statistic is 0"."""

    estimate: float
    low: float
    high: float
    mean: float = float("nan")
    basic_low: float = float("nan")
    basic_high: float = float("nan")
    borderline: bool = False
    p_value: float = float("nan")
    replicates: int = 0

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        mark = " *" if self.excludes_zero else ""
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]{mark}"


def interval_of_replicates(estimate: float, values: np.ndarray, level: float = 0.95) -> Interval:
    """Return the Interval of `estimate` from its bootstrap replicate `values` ([B]): percentile and basic
    endpoints, the replicates' mean, the two-sided p-value and the Monte-Carlo borderline mark.

    An endpoint is the order statistic of rank about B·q (q = 0.025, 0.975); the rank of that quantile
    varies between bootstrap runs with standard deviation sqrt(B·q·(1 - q)) (binomial), so the endpoint's
    Monte-Carlo range is the replicates within 2 such deviations of that rank. The interval is
    `borderline` when that range of either endpoint contains 0.
    """
    values = np.sort(np.asarray(values, dtype=np.float64))
    count = values.shape[0]
    tail = (1.0 - level) / 2
    low, high = np.percentile(values, [tail * 100, (1 - tail) * 100])
    spread = 2.0 * np.sqrt(count * tail * (1 - tail))
    borderline = False
    for q in (tail, 1 - tail):
        rank = q * (count - 1)
        first = values[int(np.clip(np.floor(rank - spread), 0, count - 1))]
        last = values[int(np.clip(np.ceil(rank + spread), 0, count - 1))]
        borderline |= bool(first <= 0.0 <= last) and not bool(first == last == 0.0)
    below, above = np.count_nonzero(values <= 0), np.count_nonzero(values >= 0)
    p_value = min(1.0, 2.0 * (min(below, above) + 1) / (count + 1))
    return Interval(
        float(estimate), float(low), float(high), float(values.mean()),
        float(2 * estimate - high), float(2 * estimate - low), borderline, p_value, count,
    )


#: A linear contrast of AP values: (weight, evaluation) terms, e.g. [(1, variant), (-1, reference)].
Contrast = Sequence[tuple[float, PerImageEval]]


def contrast_replicates(
    contrasts: Sequence[Contrast], draws: np.ndarray, cache: dict[int, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ([C] each contrast's value on the full set, [C, B] its value on every picture multiset of
    `draws`): sum(weight * AP) per contrast, the same multisets for every term (which pairs them).

    Every evaluation must cover the same pictures; `cache` keeps each evaluation's replicate APs (by id)
    across calls that share `draws`.
    """
    if not contrasts or not all(contrasts):
        raise EvaluationError("a bootstrap contrast needs at least one term")
    image_ids = contrasts[0][0][1].image_ids
    for contrast in contrasts:
        for _, evaluation in contrast:
            if not np.array_equal(evaluation.image_ids, image_ids):
                raise EvaluationError("paired evaluations must cover the same pictures")
    cache = {} if cache is None else cache
    full, replicates = [], []
    for contrast in contrasts:
        full.append(sum(w * coco_ap(e) for w, e in contrast))
        replicates.append(sum(w * replicate_aps(e, draws, cache) for w, e in contrast))
    return np.asarray(full, dtype=np.float64), np.stack(replicates)


def contrast_interval(
    contrasts: Sequence[Contrast],
    draws: np.ndarray,
    level: float = 0.95,
    cache: dict[int, np.ndarray] | None = None,
) -> Interval:
    """Return the mean over `contrasts` of sum(weight * AP) with its paired bootstrap interval over pictures.

    Typically one contrast per seed: [(1, variant), (-1, reference)] for a difference of segm AP,
    [(1, masks ranked by mask score), (-1, the same ranked by class score)] for the rescoring gain.
    `draws` ([B, N] from `bootstrap_counts`) are the same picture multisets for every term, which is what
    pairs them. Every replicate averages all the contrasts: the interval holds the trained models fixed
    (it is an interval "given these trained models"); the spread between training runs is
    `msr.studies.over_runs`'s.
    """
    full, replicates = contrast_replicates(contrasts, draws, cache)
    return interval_of_replicates(float(full.mean()), replicates.mean(axis=0), level)


def replicate_aps(evaluation: PerImageEval, draws: np.ndarray, cache: dict[int, np.ndarray]) -> np.ndarray:
    """Return [B] the AP of `evaluation` on every picture multiset of `draws` ([B, N]; memoised in `cache`
    by evaluation); -1 for a multiset without ground truth."""
    key = id(evaluation)
    if key not in cache:
        sums = np.zeros(draws.shape[0])
        with_gt = np.zeros(draws.shape[0])
        for category in evaluation.categories:
            means, has_gt = _category_precisions(category, draws)
            sums += np.where(has_gt, means, 0.0)
            with_gt += has_gt
        cache[key] = np.where(with_gt > 0, sums / np.maximum(with_gt, 1), -1.0)
    return cache[key]
