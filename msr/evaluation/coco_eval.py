"""COCO bbox/segm evaluation with faster-coco-eval (default) or pycocotools, as a flat dict of floats.

Metric keys, for `t` in {"bbox", "segm"}: `t/AP`, `t/AP50`, `t/AP75`, `t/APs`, `t/APm`, `t/APl`,
`t/AR1`, `t/AR10`, `t/AR100`, `t/ARs`, `t/ARm`, `t/ARl` (COCOeval's 12 `stats`, in that order), and
`t/AP-<category name>` (AP@[.5:.95], all areas, 100 detections) for every ground-truth category.

Values follow COCO: a statistic with no ground truth behind it (e.g. APs when no small object exists, or
a category absent from the evaluated images) is -1; with ground truth but no detection at all it is 0.
Empty result lists are evaluated, not special-cased, so they give 0 / -1 exactly as COCOeval does.

Exactness: both backends reproduce pycocotools' AP bit for bit on the COCO API's fixture. faster-coco-eval
stores 1.0 where pycocotools stores 1/(1+eps) = 0.9999999999999998 (precision after one true positive,
`tp / (tp + fp + np.spacing(1))`), so other statistics can differ from pycocotools by one ulp (≤2.3e-16).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from msr.errors import EvaluationError
from msr.evaluation.calibration import class_score_results, upper_bound_results
from msr.evaluation.ground_truth import GroundTruthLike, make_coco, normalize_backend
from msr.evaluation.metrics import CLASS_SCORE, COCO_STATS, SEGM, UPPER_BOUND
from msr.evaluation.results import IOU_TYPES, Results, ResultsLike, check_results, load_results

# how COCOeval.summarize() describes its 12 statistics: (AP or AR, IoU, area, maxDets)
_STAT_ROWS = (
    ("AP", None, "all", 100),
    ("AP", 0.5, "all", 100),
    ("AP", 0.75, "all", 100),
    ("AP", None, "small", 100),
    ("AP", None, "medium", 100),
    ("AP", None, "large", 100),
    ("AR", None, "all", 1),
    ("AR", None, "all", 10),
    ("AR", None, "all", 100),
    ("AR", None, "small", 100),
    ("AR", None, "medium", 100),
    ("AR", None, "large", 100),
)


def evaluate_coco(
    results: ResultsLike,
    gt: GroundTruthLike,
    iou_type: str = "segm",
    backend: str = "faster_coco_eval",
    img_ids: Iterable[int] | None = None,
    per_class: bool = True,
    print_fn: Callable[[str], Any] | None = None,
    source: str | None = None,
) -> dict[str, float]:
    """Return the flat COCO metrics dict (`<iou_type>/AP`, ..., `<iou_type>/AP-<name>`) of `results` vs `gt`.

    `results`: COCO result list or the path of its JSON file (extra keys such as `class_score` are ignored).
    `gt`: annotation file path, dataset dict or COCO object (reused when it is the backend's own class).
    `img_ids`: evaluate only these images (e.g. those a validation run saw); default all GT images.
    `print_fn`: if given, called with the standard COCO table. `source`: the results' name in error
    messages (default: the file path, or "results"). The caller's dicts are not modified.
    """
    if iou_type not in IOU_TYPES:
        raise EvaluationError(f"unknown iou type {iou_type!r}; choose from {list(IOU_TYPES)}")
    backend = normalize_backend(backend)
    coco_gt = make_coco(gt, backend)
    results, default_source = load_results(results)
    source = source or default_source
    image_sizes = {img["id"]: (img["height"], img["width"]) for img in coco_gt.dataset["images"]}
    check_results(results, iou_type, image_sizes, coco_gt.getCatIds(), source)
    coco_eval = make_cocoeval(coco_gt, results, iou_type, backend, img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()

    metrics = {f"{iou_type}/{name}": float(v) for name, v in zip(COCO_STATS, coco_eval.stats[:12])}
    if per_class:
        metrics.update(_per_class_ap(coco_eval, coco_gt, iou_type))
    if print_fn is not None:
        print_fn(format_coco_table(metrics, iou_type))
    return metrics


def format_coco_table(metrics: dict[str, float], iou_type: str) -> str:
    """Return COCOeval.summarize()'s 12-line table for `iou_type`, headed by `type=<iou_type>`."""
    lines = [f"type={iou_type}"]
    for name, (kind, iou, area, max_dets) in zip(COCO_STATS, _STAT_ROWS):
        title = "Average Precision" if kind == "AP" else "Average Recall"
        iou_str = "0.50:0.95" if iou is None else f"{iou:0.2f}"
        lines.append(
            f" {title:<18} ({kind}) @[ IoU={iou_str:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] "
            f"= {metrics[f'{iou_type}/{name}']:0.3f}"
        )
    return "\n".join(lines)


def rescoring_metrics(
    segm_results: ResultsLike,
    gt: GroundTruthLike,
    true_iou: np.ndarray,
    backend: str = "faster_coco_eval",
    img_ids: Iterable[int] | None = None,
) -> dict[str, float]:
    """Return the paper's Table 7 comparison: the same segm results re-ranked by other mask scores.

    `segm_upper_bound/*`: the 12 COCO stats with score = class score × true IoU (an oracle MaskIoU head;
    `true_iou` as from `calibration.true_mask_ious`). `segm_class_score/*`, only when some result carries
    a predicted IoU (MS R-CNN): score = class score, i.e. the MaskIoU rescoring switched off, so
    `segm/AP - segm_class_score/AP` is the gain of the rescoring alone on the same masks.
    """
    results, _ = load_results(segm_results)
    coco_gt = make_coco(gt, backend)
    # each rescored copy is made when its turn comes: one at a time in memory (~250 MB each at val size)
    rescorings = {UPPER_BOUND: lambda: upper_bound_results(results, coco_gt, true_iou)}
    if any(r.get("mask_iou") is not None for r in results):
        rescorings[CLASS_SCORE] = lambda: class_score_results(results)
    metrics: dict[str, float] = {}
    for prefix, rescore in rescorings.items():
        stats = evaluate_coco(rescore(), coco_gt, "segm", backend, img_ids=img_ids, per_class=False)
        metrics.update({k.replace(SEGM, prefix, 1): v for k, v in stats.items()})
    return metrics


def make_cocoeval(
    coco_gt: Any, results: Results, iou_type: str, backend: str, img_ids: Iterable[int] | None = None
) -> Any:
    """Return the backend's COCOeval (not yet run) of `results` against `coco_gt`, over `img_ids` (default:
    every GT picture; an id the GT lacks raises EvaluationError). The caller's dicts are not modified."""
    # shallow copies: loadRes writes id/area/iscrowd into each dict. A segm result's `bbox` would make
    # both APIs use the box area for the small/medium/large split, so it goes.
    dets = [dict(r) for r in results]
    if iou_type == "segm":
        for d in dets:
            d.pop("bbox", None)
    coco_eval = _backend_cocoeval(coco_gt, dets, iou_type, backend)
    if img_ids is not None:
        ids = sorted({int(i) for i in img_ids})
        unknown = set(ids) - set(coco_gt.getImgIds())
        if unknown:
            raise EvaluationError(f"img_ids not in the ground truth: {sorted(unknown)[:5]}")
        coco_eval.params.imgIds = ids
    return coco_eval


def _backend_cocoeval(coco_gt: Any, dets: Results, iou_type: str, backend: str) -> Any:
    """Return the backend's COCOeval over `coco_gt` and the detections `dets` (which it may modify)."""
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCOeval_faster

        coco_dt = coco_gt.loadRes(dets)
        return COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=_silent)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # pycocotools' loadRes indexes anns[0]; an empty result set is built by hand
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": list(coco_gt.dataset["images"]),
                "categories": list(coco_gt.dataset["categories"]),
                "annotations": [],
            }
            coco_dt.createIndex()
        return COCOeval(coco_gt, coco_dt, iou_type)


def _per_class_ap(coco_eval: Any, coco_gt: Any, iou_type: str) -> dict[str, float]:
    """Return `{<iou_type>/AP-<name>: AP@[.5:.95]}` per category from COCOeval's precision (-1: no GT)."""
    precision = np.asarray(coco_eval.eval["precision"])  # [T, R, K, A, M]
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    out = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[f"{iou_type}/AP-{names[int(cat_id)]}"] = float(np.mean(p)) if p.size else -1.0
    return out


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """Swallow faster-coco-eval's progress messages."""
