"""MaskIoU calibration: true IoUs, correlations on hand-built cases with known answers, upper bound."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from msr.errors import EvaluationError
from msr.evaluation.calibration import (
    calibration_data,
    calibration_metrics,
    class_score_results,
    compute_calibration,
    true_mask_ious,
    upper_bound_results,
)
from msr.evaluation.coco_eval import evaluate_coco, rescoring_metrics
from msr.evaluation.scoring import score_results_file

H = W = 30
TRUE_IOUS = [0.2, 0.4, 0.6, 0.8, 1.0]


@pytest.fixture
def strip_case(synth):
    """GT: one 10x10 square of 'cat' plus a crowd 'cat' region; detections with IoU 0.2..1.0 + 2 unmatched."""
    gt = {
        "images": [{"id": 1, "height": H, "width": W}],
        "categories": [dict(c) for c in synth.CATEGORIES],
        "annotations": [
            synth.annotation(1, 1, 3, H, W, (0, 0, 10, 10)),
            synth.annotation(2, 1, 3, H, W, (15, 15, 30, 30), crowd=1),
        ],
    }
    results = []
    for t in TRUE_IOUS:  # columns 0..k of the square: IoU k/10
        k = round(t * 10)
        results.append(
            {
                "image_id": 1,
                "category_id": 3,
                "segmentation": synth.rle_of(synth.rect_mask(H, W, 0, 0, k, 10)),
                "class_score": 1.0 - 0.5 * t,  # anti-monotonic in the true IoU
                "mask_iou": 0.5 * t + 0.2,  # a linear function of the true IoU
                "score": (1.0 - 0.5 * t) * (0.5 * t + 0.2),
            }
        )
    unmatched = [
        (3, (16, 16, 28, 28)),  # inside the crowd region only: crowd GT does not count
        (7, (0, 0, 10, 10)),  # right place, wrong category
    ]
    for cat, box in unmatched:
        results.append(
            {
                "image_id": 1,
                "category_id": cat,
                "segmentation": synth.rle_of(synth.rect_mask(H, W, *box)),
                "class_score": 0.99,
                "mask_iou": 0.9,
                "score": 0.891,
            }
        )
    return gt, results


def test_true_ious_of_rectangles(strip_case):
    gt, results = strip_case
    np.testing.assert_allclose(true_mask_ious(results, gt), [*TRUE_IOUS, 0.0, 0.0], rtol=0, atol=1e-12)


def test_known_correlations(strip_case):
    gt, results = strip_case
    metrics, data = compute_calibration(results, gt)
    assert metrics["calib/num_detections"] == 7
    assert metrics["calib/num_matched"] == 5
    assert metrics["calib/num_unmatched"] == 2
    assert metrics["calib/mean_true_iou"] == pytest.approx(0.6)
    assert metrics["calib/pearson_pred_iou"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["calib/spearman_pred_iou"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["calib/pearson_class_score"] == pytest.approx(-1.0, abs=1e-12)
    assert metrics["calib/spearman_class_score"] == pytest.approx(-1.0, abs=1e-12)
    # |0.5 t + 0.2 - t| for t = .2 .. 1.0 → .1 0 .1 .2 .3
    assert metrics["calib/mae_pred_iou"] == pytest.approx(0.14)
    t = np.array(TRUE_IOUS)
    ms = (1 - 0.5 * t) * (0.5 * t + 0.2)
    assert metrics["calib/pearson_mask_score"] == pytest.approx(np.corrcoef(t, ms)[0, 1], abs=1e-12)
    # the per-detection arrays come back for plots, in result order
    np.testing.assert_allclose(data.true_iou[:5], t, atol=1e-12)
    np.testing.assert_allclose(data.pred_iou[:5], 0.5 * t + 0.2)
    assert data.matched.tolist() == [True] * 5 + [False] * 2


def test_positive_metrics_use_only_detections_with_true_iou_of_at_least_half(strip_case):
    gt, results = strip_case
    metrics, _ = compute_calibration(results, gt)
    assert metrics["calib/num_positive"] == 3  # true IoU 0.6, 0.8, 1.0
    t = np.array(TRUE_IOUS[2:])
    # predicted IoU 0.5 t + 0.2: |0.5 t + 0.2 - t| = .1 .2 .3 over the positives
    assert metrics["calib/mae_pred_iou_positive"] == pytest.approx(0.2)
    assert metrics["calib/pearson_pred_iou_positive"] == pytest.approx(1.0, abs=1e-12)
    ms = (1 - 0.5 * t) * (0.5 * t + 0.2)
    assert metrics["calib/pearson_mask_score_positive"] == pytest.approx(np.corrcoef(t, ms)[0, 1], abs=1e-12)
    assert metrics["calib/spearman_class_score_positive"] == pytest.approx(-1.0, abs=1e-12)
    # the any-overlap figures are unchanged by the positives' (all five matched detections)
    assert metrics["calib/mae_pred_iou"] == pytest.approx(0.14)


def test_baseline_has_no_mask_score_metrics(strip_case):
    gt, results = strip_case
    baseline = [{k: v for k, v in r.items() if k not in ("mask_iou", "class_score")} for r in results]
    metrics, data = compute_calibration(baseline, gt)
    assert set(metrics) == {
        "calib/num_detections",
        "calib/num_matched",
        "calib/num_unmatched",
        "calib/mean_true_iou",
        "calib/pearson_class_score",
        "calib/spearman_class_score",
        "calib/num_positive",
        "calib/pearson_class_score_positive",
        "calib/spearman_class_score_positive",
    }
    assert np.isnan(data.pred_iou).all()
    np.testing.assert_array_equal(data.class_score, [r["score"] for r in results])  # score stands in


def test_degenerate_cases_are_nan(strip_case):
    gt, results = strip_case
    one = calibration_metrics(calibration_data(results[:1], gt))
    assert one["calib/num_matched"] == 1
    assert math.isnan(one["calib/pearson_class_score"]) and math.isnan(one["calib/spearman_pred_iou"])
    assert one["calib/mae_pred_iou"] == pytest.approx(abs(0.3 - 0.2))
    beyond = [{**results[0], "mask_iou": 1.9}]  # an untrained head's raw output: the MAE takes it as 1.0
    assert calibration_metrics(calibration_data(beyond, gt))["calib/mae_pred_iou"] == pytest.approx(1 - 0.2)
    constant = [{**r, "class_score": 0.5} for r in results]
    m = calibration_metrics(calibration_data(constant, gt))
    assert math.isnan(m["calib/pearson_class_score"]) and math.isnan(m["calib/spearman_class_score"])
    assert m["calib/pearson_pred_iou"] == pytest.approx(1.0)
    none = calibration_metrics(calibration_data(results[5:], gt))  # unmatched only
    assert none["calib/num_matched"] == 0 and math.isnan(none["calib/mean_true_iou"])
    assert math.isnan(none["calib/mae_pred_iou"])
    empty = calibration_metrics(calibration_data([], gt))
    assert empty["calib/num_detections"] == 0 and math.isnan(empty["calib/pearson_class_score"])


def test_upper_bound_rescoring(strip_case):
    gt, results = strip_case
    rescored = upper_bound_results(results, gt)
    expected = [(1 - 0.5 * t) * t for t in TRUE_IOUS] + [0.0, 0.0]
    assert [r["score"] for r in rescored] == pytest.approx(expected)
    assert [r["true_iou"] for r in rescored] == pytest.approx([*TRUE_IOUS, 0.0, 0.0])
    assert results[0]["score"] == pytest.approx((1 - 0.1) * 0.3)  # input untouched


def one_object_two_masks(synth, class_scores, mask_ious=None):
    """Return (GT of one 10x10 'cat', results: the exact mask and an IoU-0.6 one, with these scores)."""
    gt = {
        "images": [{"id": 1, "height": H, "width": W}],
        "categories": [dict(c) for c in synth.CATEGORIES],
        "annotations": [synth.annotation(1, 1, 3, H, W, (0, 0, 10, 10))],
    }
    results = []
    for i, (width, class_score) in enumerate(zip((10, 6), class_scores)):
        mask = synth.rle_of(synth.rect_mask(H, W, 0, 0, width, 10))
        result = {"image_id": 1, "category_id": 3, "segmentation": mask, "class_score": class_score}
        result["score"] = class_score
        if mask_ious is not None:
            result["mask_iou"] = mask_ious[i]
            result["score"] = class_score * mask_ious[i]
        results.append(result)
    return gt, results


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_upper_bound_fixes_a_bad_ranking(synth, backend):
    gt, results = one_object_two_masks(synth, class_scores=(0.8, 0.9))
    plain = evaluate_coco(results, gt, "segm", backend)["segm/AP"]
    upper = evaluate_coco(upper_bound_results(results, gt), gt, "segm", backend)["segm/AP"]
    assert plain < 1.0
    assert upper == pytest.approx(1.0, abs=1e-15)  # pycocotools: 1/(1+eps) for a single TP


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_rescoring_metrics_separate_the_maskiou_gain(synth, backend):
    """Two masks of one object: the class score prefers the worse one, the predicted IoU fixes it."""
    gt, results = one_object_two_masks(synth, class_scores=(0.8, 0.9), mask_ious=(0.9, 0.5))
    assert [r["score"] for r in class_score_results(results)] == [0.8, 0.9]
    true_iou = true_mask_ious(results, gt)
    metrics = rescoring_metrics(results, gt, true_iou, backend)
    rescored_ap = evaluate_coco(results, gt, "segm", backend)["segm/AP"]
    assert rescored_ap == pytest.approx(1.0, abs=1e-15)
    # ranked by class score the IoU-0.6 mask comes first: a false positive at IoU ≥ 0.65 → AP below 1
    assert metrics["segm_class_score/AP"] < rescored_ap - 0.2
    assert metrics["segm_upper_bound/AP"] == pytest.approx(1.0, abs=1e-15)
    # Mask R-CNN results (no predicted IoU) get the upper bound only
    plain = [{k: v for k, v in r.items() if k != "mask_iou"} for r in results]
    assert not any(k.startswith("segm_class_score/") for k in rescoring_metrics(plain, gt, true_iou, backend))


def test_true_ious_agree_with_cocoeval_on_fixture(fixture_dir):
    gt_path = fixture_dir / "instances_val2014_100.json"
    results = json.loads((fixture_dir / "instances_val2014_fakesegm100_results.json").read_text())
    ours = true_mask_ious(results, gt_path)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(results))), "segm")
        coco_eval.evaluate()
    expected = np.zeros(len(results))
    for key, dts in coco_eval._dts.items():
        ious = coco_eval.ious[key]
        if len(ious) == 0:
            continue
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")  # COCOeval's row order
        non_crowd = np.array([not g["iscrowd"] for g in coco_eval._gts[key]])
        for row, d in enumerate(order):
            if non_crowd.any():
                expected[dts[d]["id"] - 1] = ious[row, non_crowd].max()
    np.testing.assert_array_equal(ours, expected)
    assert (ours > 0).sum() == 651


def test_fixture_upper_bound_beats_box_scores(fixture_dir):
    metrics = score_results_file(
        fixture_dir / "instances_val2014_fakesegm100_results.json",
        fixture_dir / "instances_val2014_100.json",
        print_fn=None,
        calibration=True,
        upper_bound=True,
    ).metrics
    assert metrics["segm_upper_bound/AP"] > metrics["segm/AP"] + 0.05
    assert metrics["calib/num_matched"] == 651
    assert not any(k.startswith("segm_class_score/") for k in metrics)  # fake results carry no mask_iou


def test_correlations_of_two_points_and_of_a_unit_range_are_defined():
    from msr.evaluation.calibration import pearson, spearman

    for corr in (pearson, spearman):
        assert corr(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
        assert corr(np.array([0.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(-1.0)
        assert math.isnan(corr(np.array([0.5]), np.array([0.5])))
        assert math.isnan(corr(np.array([0.0, 1.0]), np.array([2.0, 2.0])))  # a constant score
        assert math.isnan(corr(np.array([3.0, 3.0]), np.array([0.0, 1.0])))  # a constant IoU


def test_results_without_a_class_score_keep_their_score_as_class_score():
    from msr.evaluation.calibration import CalibrationData, calibration_data, class_score_results

    results = [{"image_id": 1, "category_id": 1, "segmentation": {}, "score": 0.7}]
    assert class_score_results(results)[0]["score"] == 0.7
    rescored = upper_bound_results(results, None, true_iou=np.array([0.5]))
    assert rescored[0]["score"] == pytest.approx(0.35) and rescored[0]["true_iou"] == 0.5
    data = calibration_data(results, None, true_iou=np.array([0.5]))
    assert isinstance(data, CalibrationData) and data.class_score.tolist() == [0.7]
    assert data.mask_score.dtype == data.class_score.dtype == data.true_iou.dtype == np.float64
    with pytest.raises(EvaluationError, match="true_iou has 2 entries for 1 results"):
        upper_bound_results(results, None, true_iou=np.array([0.5, 0.6]))


def test_a_detection_of_true_iou_one_half_is_positive():
    from msr.evaluation.calibration import CalibrationData, calibration_metrics

    true_iou = np.array([0.5, 0.49, 0.9, 0.0])
    data = CalibrationData(true_iou, np.array([0.9, 0.8, 0.7, 0.6]), np.full(4, np.nan), np.zeros(4))
    assert calibration_metrics(data, prefix="")["num_positive"] == 2.0


def test_polygon_ground_truth_and_a_missing_iscrowd_key_count_as_plain_objects(synth):
    """A ground truth given as a polygon, without an iscrowd key, is matched like its RLE twin; a picture
    without ground truth of the class before it does not stop the matching."""
    from msr.evaluation.calibration import true_mask_ious

    h, w = 16, 16
    square = synth.rle_of(synth.rect_mask(h, w, 2, 2, 10, 10))  # 8x8 at (2, 2)
    half = synth.rle_of(synth.rect_mask(h, w, 2, 2, 10, 6))  # its top half
    polygon = {"id": 1, "image_id": 2, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64.0,
               "segmentation": [[2.0, 2.0, 10.0, 2.0, 10.0, 10.0, 2.0, 10.0]]}
    gt = {
        "images": [{"id": i, "height": h, "width": w, "file_name": f"{i}.png"} for i in (1, 2)],
        "annotations": [polygon],
        "categories": [{"id": 1, "name": "thing"}],
    }
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": square, "score": 0.9},  # nothing to match
        {"image_id": 2, "category_id": 1, "segmentation": square, "score": 0.8},
        {"image_id": 2, "category_id": 1, "segmentation": half, "score": 0.7},
    ]
    assert true_mask_ious(results, gt).tolist() == pytest.approx([0.0, 1.0, 0.5])


def test_a_ground_truth_without_segmentation_is_named(synth):
    from msr.evaluation.calibration import true_mask_ious

    square = synth.rle_of(synth.rect_mask(16, 16, 2, 2, 10, 10))
    gt = {
        "images": [{"id": 1, "height": 16, "width": 16, "file_name": "1.png"}],
        "annotations": [{"id": 42, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64.0,
                         "iscrowd": 0, "segmentation": None}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    results = [{"image_id": 1, "category_id": 1, "segmentation": square, "score": 0.9}]
    with pytest.raises(EvaluationError, match="ground-truth annotation 42 has"):
        true_mask_ious(results, gt)
