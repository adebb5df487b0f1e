"""The one orchestration of an evaluation: COCOeval per iou type, then calibration and the rescorings.

Used by `COCOEvaluator.compute` (validation loops) and by `score_results_file` (msr-eval's scoring of
a saved results file), so that both compute every metric through the same calls in the same order:
`evaluate_coco` for each iou type (bbox before segm), then the calibration of the segm results,
then `rescoring_metrics` over the same images.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msr.errors import EvaluationError
from msr.evaluation.bootstrap import bootstrap_counts, contrast_interval, evaluate_per_image, replicate_aps
from msr.evaluation.calibration import (
    CalibrationData,
    calibration_data,
    calibration_metrics,
    class_score_results,
    true_mask_ious,
)
from msr.evaluation.coco_eval import evaluate_coco, rescoring_metrics
from msr.evaluation.ground_truth import GroundTruthLike, make_coco, normalize_backend
from msr.evaluation.memo import EvaluationMemo, remember
from msr.evaluation.metrics import CLASS_SCORE, RESCORING_GAIN, SEGM
from msr.evaluation.results import ResultsLike, load_results


@dataclass
class EvaluationResult:
    """What an evaluation gives: the flat metrics dict and, where it was computed, what it was computed on.

    `results`: the evaluated COCO results per iou type; `image_ids`: the images evaluated (None: all
    ground-truth images); `calibration`: the per-detection arrays of the segm results (for plots).
    `COCOEvaluator.compute` fills these three on rank 0 only.
    """

    metrics: dict[str, float]
    results: dict[str, list[dict]] | None = None
    image_ids: list[int] | None = None
    calibration: CalibrationData | None = None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector within the block (also as a decorator); reference counting
    still frees what is dropped. An evaluation at COCO val size makes millions of objects (result dicts,
    COCO indexes) that stay alive while it runs: full collections over them find nothing and cost about
    a fifth of its time."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@gc_paused()
def evaluate_results(
    results: Mapping[str, ResultsLike],
    gt: GroundTruthLike,
    *,
    backend: str = "faster_coco_eval",
    img_ids: Iterable[int] | None = None,
    per_class: bool = True,
    calibration: bool = True,
    upper_bound: bool = False,
    bootstrap: int = 0,
    print_fn: Callable[[str], Any] | None = None,
    source: str | None = None,
    memo: EvaluationMemo | None = None,
) -> EvaluationResult:
    """Return the EvaluationResult of COCO `results` ({iou type: result list or JSON path}) against `gt`.

    Metrics: `evaluate_coco` of every iou type (in the mapping's order; `per_class` adds the per-class
    APs, `print_fn` gets the COCO tables), with `calibration` the `calib/*` metrics and with
    `upper_bound` the `rescoring_metrics` of the segm results (both need segm results) and, for MS R-CNN
    results, the rescoring gain `segm_rescoring_gain/AP` (segm AP - the same masks ranked by class score)
    with its 95% interval (`..._low`, `..._high`) from `bootstrap` replicates of a paired bootstrap over
    the images (0: no interval). `img_ids`:
    evaluate only these images (default: all). `source`: the results' name in error messages. `memo`: the
    evaluation memo of a shared head pass (msr.evaluation.memo): the steps whose inputs equal an earlier
    job's are taken from it.
    """
    if (calibration or upper_bound) and "segm" not in results:
        raise EvaluationError("calibration and upper_bound need segm results (iou_types without 'segm')")
    backend = normalize_backend(backend)
    ids = None if img_ids is None else [int(i) for i in img_ids]
    coco_gt = make_coco(gt, backend)
    loaded: dict[str, list[dict]] = {}
    metrics: dict[str, float] = {}
    for iou_type, res in results.items():
        loaded[iou_type], name = load_results(res)
        step_memo = memo if print_fn is None else None  # a remembered step prints no table
        metrics.update(
            remember(
                step_memo,
                f"coco {iou_type}",
                lambda t=iou_type: (loaded[t], ids, backend, per_class),
                lambda t=iou_type, n=name: evaluate_coco(
                    loaded[t],
                    coco_gt,
                    t,
                    backend,
                    img_ids=ids,
                    per_class=per_class,
                    print_fn=print_fn,
                    source=source or n,
                ),
            )
        )
    data = None
    if calibration or upper_bound:
        segm = loaded["segm"]
        true_iou = remember(memo, "true iou", lambda: _masks(segm), lambda: true_mask_ious(segm, coco_gt))
        data = calibration_data(segm, coco_gt, true_iou)
        if calibration:
            metrics.update(calibration_metrics(data))
        if upper_bound:
            rescored = remember(
                memo,
                "rescoring",
                lambda: (_masks(segm), [r.get("mask_iou") is None for r in segm], ids, backend),
                lambda: rescoring_metrics(segm, coco_gt, data.true_iou, backend, ids),
            )
            metrics.update(rescored)
            if f"{CLASS_SCORE}AP" in metrics:
                metrics.update(rescoring_gain(segm, coco_gt, metrics, bootstrap, ids, memo))
    return EvaluationResult(metrics, loaded, ids, data)


def _masks(segm_results: list[dict]) -> list[tuple]:
    """Return what the detections of segm results are apart from their mask scores: picture, class, mask
    and class score of each."""
    return [
        (r["image_id"], r["category_id"], r["segmentation"]["counts"], r.get("class_score", r["score"]))
        for r in segm_results
    ]


def rescoring_gain(
    segm_results: list[dict],
    gt: GroundTruthLike,
    metrics: Mapping[str, float],
    replicates: int,
    img_ids: Sequence[int] | None = None,
    memo: EvaluationMemo | None = None,
) -> dict[str, float]:
    """Return the rescoring gain `segm/AP - segm_class_score/AP` of `metrics` and, with `replicates` > 0,
    its 95% paired bootstrap interval over the images (`<key>_low`, `<key>_high`)."""
    gain = {RESCORING_GAIN: metrics[f"{SEGM}AP"] - metrics[f"{CLASS_SCORE}AP"]}
    if replicates <= 0:
        return gain
    by_mask_score = evaluate_per_image(segm_results, gt, "segm", img_ids)
    by_class_score = remember(
        memo,
        "per-image class score",
        lambda: (_masks(segm_results), img_ids),
        lambda: evaluate_per_image(class_score_results(segm_results), gt, "segm", img_ids),
    )
    draws = bootstrap_counts(len(by_mask_score.image_ids), replicates)
    baseline = remember(
        memo,
        "class score replicate APs",
        lambda: (_masks(segm_results), img_ids, replicates),
        lambda: replicate_aps(by_class_score, draws, {}),
    )
    cache = {id(by_class_score): baseline}  # this call's own: an id is valid while its object lives
    interval = contrast_interval([[(1.0, by_mask_score), (-1.0, by_class_score)]], draws, cache=cache)
    gain[f"{RESCORING_GAIN}_low"], gain[f"{RESCORING_GAIN}_high"] = interval.low, interval.high
    return gain


def score_results_file(
    results_json: str | os.PathLike,
    ann_file: GroundTruthLike,
    iou_types: Sequence[str] | str | None = None,
    backend: str = "faster_coco_eval",
    print_fn: Callable[[str], Any] | None = print,
    calibration: bool = False,
    upper_bound: bool = False,
    bootstrap: int = 0,
) -> EvaluationResult:
    """Return the EvaluationResult of an existing results JSON against an annotation file (all its images).

    `iou_types`: "bbox", "segm" or both; by default those the file's first result supports (`bbox` key →
    bbox, `segmentation` key → segm). The COCO tables go to `print_fn`. `calibration` adds the `calib/*`
    metrics when segm results are evaluated (a bbox results file is scored without them); `upper_bound`
    adds the `rescoring_metrics` (`segm_upper_bound/*`, `segm_class_score/*`) and needs segm results.
    """
    results, source = load_results(results_json)
    if isinstance(iou_types, str):
        iou_types = [iou_types]
    if iou_types is None:
        first = results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else {}
        iou_types = [t for t, key in (("bbox", "bbox"), ("segm", "segmentation")) if key in first]
        if not iou_types:
            raise EvaluationError(f"{source}: cannot tell bbox from segm results (empty or no geometry key)")
    return evaluate_results(
        {t: results for t in iou_types},
        ann_file,
        backend=backend,
        calibration=calibration and "segm" in iou_types,
        upper_bound=upper_bound,
        bootstrap=bootstrap,
        print_fn=print_fn,
        source=source,
    )
