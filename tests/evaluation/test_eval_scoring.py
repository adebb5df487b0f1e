"""evaluate_results: the one orchestration equals the separate calls it is made of, bit for bit."""

from __future__ import annotations

import json
import math

import pytest

from msr.errors import EvaluationError
from msr.evaluation.calibration import compute_calibration
from msr.evaluation.coco_eval import evaluate_coco, rescoring_metrics
from msr.evaluation.ground_truth import make_coco
from msr.evaluation.results import predictions_to_coco
from msr.evaluation.scoring import EvaluationResult, evaluate_results, score_results_file

BACKENDS = ["faster_coco_eval", "pycocotools"]


def identical(a: dict, b: dict) -> bool:
    """Return True when two metric dicts have the same keys in order and equal values (NaN == NaN)."""
    return list(a) == list(b) and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def tiny_results(dataset, synth, with_iou=True):
    """Return {"bbox": [...], "segm": [...]} of the noisy fake model on every image of `dataset`."""
    out = {"bbox": [], "segm": []}
    for image_id, output in synth.noisy_outputs(dataset).items():
        if not with_iou:
            output = {k: v for k, v in output.items() if k not in ("mask_ious", "mask_scores")}
        bbox, segm = predictions_to_coco(output, image_id, synth.CAT_IDS)
        out["bbox"] += bbox
        out["segm"] += segm
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_iou", [True, False])
def test_equals_the_per_type_calls(tiny_gt, synth, backend, with_iou):
    path, dataset = tiny_gt
    results = tiny_results(dataset, synth, with_iou)
    img_ids = [img["id"] for img in dataset["images"]][1:]  # a subset, as a validation loop may see
    result = evaluate_results(results, path, backend=backend, img_ids=iter(img_ids), upper_bound=True)

    coco_gt = make_coco(path, backend)
    expected = {}
    for iou_type in ("bbox", "segm"):
        expected.update(evaluate_coco(results[iou_type], coco_gt, iou_type, backend, img_ids=img_ids))
    calib, data = compute_calibration(results["segm"], coco_gt)
    expected.update(calib)
    expected.update(rescoring_metrics(results["segm"], coco_gt, data.true_iou, backend, img_ids))
    if with_iou:  # the rescoring gain, without an interval unless bootstrap replicates are asked for
        expected["segm_rescoring_gain/AP"] = expected["segm/AP"] - expected["segm_class_score/AP"]
    assert identical(result.metrics, expected)
    assert any(k.startswith("segm_class_score/") for k in expected) is with_iou
    assert result.results == results and result.image_ids == img_ids
    assert result.calibration.true_iou.tolist() == data.true_iou.tolist()


def test_options_switch_families_off(tiny_gt, synth):
    path, dataset = tiny_gt
    results = tiny_results(dataset, synth)
    bbox_only = evaluate_results({"bbox": results["bbox"]}, path, calibration=False, per_class=False)
    assert identical(bbox_only.metrics, evaluate_coco(results["bbox"], path, "bbox", per_class=False))
    assert bbox_only.calibration is None and bbox_only.image_ids is None
    segm_first = evaluate_results({"segm": results["segm"], "bbox": results["bbox"]}, path, calibration=False)
    assert next(iter(segm_first.metrics)) == "segm/AP"  # iou types in the mapping's order
    with pytest.raises(EvaluationError, match="calibration and upper_bound need segm results"):
        evaluate_results({"bbox": results["bbox"]}, path, upper_bound=True, calibration=False)


def test_score_results_file_is_evaluate_results_of_the_file(fixture_dir, capsys):
    gt = fixture_dir / "instances_val2014_100.json"
    segm_file = fixture_dir / "instances_val2014_fakesegm100_results.json"
    scored = score_results_file(segm_file, gt, calibration=True, upper_bound=True)
    assert isinstance(scored, EvaluationResult) and scored.image_ids is None
    assert capsys.readouterr().out.count("Average") == 12  # the segm table, printed once
    direct = evaluate_results({"segm": segm_file}, gt, upper_bound=True)
    assert identical(scored.metrics, direct.metrics)
    assert scored.results["segm"] == json.loads(segm_file.read_text())
    named = r"results file .*fakesegm100_results\.json\[0\]: missing key 'bbox'"
    with pytest.raises(EvaluationError, match=named):
        score_results_file(segm_file, gt, "bbox", print_fn=None)


def test_bootstrap_adds_the_rescoring_gains_interval(tiny_gt, synth):
    path, dataset = tiny_gt
    results = tiny_results(dataset, synth, True)
    plain = evaluate_results(results, path, upper_bound=True).metrics
    with_interval = evaluate_results(results, path, upper_bound=True, bootstrap=200).metrics
    gain = with_interval["segm_rescoring_gain/AP"]
    assert gain == plain["segm_rescoring_gain/AP"]
    assert with_interval["segm_rescoring_gain/AP_low"] <= gain <= with_interval["segm_rescoring_gain/AP_high"]
    assert "segm_rescoring_gain/AP_low" not in plain


def test_a_memo_shared_by_two_heads_changes_no_number(tiny_gt, synth):
    """Two jobs of a head pass: the same detections, other predicted IoUs. Evaluated through one memo, each
    gets exactly the metrics it gets alone, and the second reuses the steps that do not read mask scores."""
    from msr.evaluation.memo import EvaluationMemo

    path, dataset = tiny_gt
    first = tiny_results(dataset, synth)
    second = json.loads(json.dumps(first))
    for index, result in enumerate(second["segm"]):  # another head: other predicted IoUs, other ranking
        result["mask_iou"] = 1.0 - result["mask_iou"] + 0.001 * index
        result["score"] = result["class_score"] * result["mask_iou"]
    memo = EvaluationMemo()
    options = {"upper_bound": True, "bootstrap": 50}
    alone = [evaluate_results(r, path, **options).metrics for r in (first, second)]
    shared = [evaluate_results(r, path, memo=memo, **options).metrics for r in (first, second)]
    assert identical(shared[0], alone[0]) and identical(shared[1], alone[1])
    assert alone[0]["segm/AP"] != alone[1]["segm/AP"]  # the heads do differ
    # bbox, true IoUs, the class-score and true-IoU rankings, the bootstrap baseline and its replicate APs
    assert memo.hits == 5


@pytest.mark.parametrize("replicates", [1, 50])
def test_rescoring_gain_interval_covers_the_evaluated_pictures_only(tiny_gt, synth, replicates):
    """Evaluated on 3 of the file's 5 pictures, the gain's interval is the paired bootstrap of those 3."""
    from msr.evaluation.bootstrap import bootstrap_counts, contrast_interval, evaluate_per_image
    from msr.evaluation.calibration import class_score_results
    from msr.evaluation.scoring import rescoring_gain

    path, dataset = tiny_gt
    img_ids = sorted(img["id"] for img in dataset["images"])[:3]
    segm = [r for r in tiny_results(dataset, synth, True)["segm"] if r["image_id"] in img_ids]
    metrics = {"segm/AP": 0.5, "segm_class_score/AP": 0.25}
    gain = rescoring_gain(segm, str(path), metrics, replicates, img_ids=img_ids)
    by_mask = evaluate_per_image(segm, str(path), "segm", img_ids)
    by_class = evaluate_per_image(class_score_results(segm), str(path), "segm", img_ids)
    assert by_mask.image_ids.tolist() == img_ids
    interval = contrast_interval([[(1.0, by_mask), (-1.0, by_class)]], bootstrap_counts(3, replicates))
    assert gain == {
        "segm_rescoring_gain/AP": 0.25,
        "segm_rescoring_gain/AP_low": interval.low,
        "segm_rescoring_gain/AP_high": interval.high,
    }
    assert rescoring_gain(segm, str(path), metrics, 0, img_ids=img_ids) == {"segm_rescoring_gain/AP": 0.25}


def test_a_results_file_is_scored_by_the_kind_of_its_first_result_with_no_extras(tiny_gt, synth, tmp_path):
    """By default: the kinds of results the first result has, the default backend's numbers, no
    calibration, upper bound or interval; a bbox file asked for calibration gets none."""
    path, dataset = tiny_gt
    results = tiny_results(dataset, synth, True)
    for kind in ("bbox", "segm"):
        file = tmp_path / f"{kind}.json"
        file.write_text(json.dumps(results[kind]))
        scored = score_results_file(file, path, print_fn=None)
        assert list(scored.results) == [kind]
        direct = evaluate_results({kind: results[kind]}, path, calibration=False)
        assert identical(scored.metrics, direct.metrics)
        assert not [k for k in scored.metrics if k.startswith(("calib/", "segm_upper_bound/")) or "_low" in k]
    bbox_file = tmp_path / "bbox.json"
    assert not [k for k in score_results_file(bbox_file, path, calibration=True, print_fn=None).metrics
                if k.startswith("calib/")]
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(EvaluationError, match="empty.json: cannot tell bbox from segm results"):
        score_results_file(empty, path, print_fn=None)


def test_a_memo_recomputes_the_class_score_ranking_of_other_class_scores(tiny_gt, synth):
    """Three jobs through one memo: MS R-CNN results; the same results without class scores, their score
    being the class score (the same class-score ranking: reused); and those with other scores (another
    class-score ranking: computed again). Each gets exactly the metrics it gets alone."""
    from msr.evaluation.memo import EvaluationMemo

    path, dataset = tiny_gt
    with_class = tiny_results(dataset, synth)
    without_class = json.loads(json.dumps(with_class))
    for result in without_class["segm"]:
        result["score"] = result.pop("class_score")
    other_scores = json.loads(json.dumps(without_class))
    for index, result in enumerate(other_scores["segm"]):
        result["score"] = 1.0 - result["score"] + 0.001 * index
    jobs = (with_class, without_class, other_scores)
    options = {"upper_bound": True, "bootstrap": 50, "calibration": False}
    alone = [evaluate_results(r, path, **options).metrics for r in jobs]
    memo = EvaluationMemo()
    shared = [evaluate_results(r, path, memo=memo, **options).metrics for r in jobs]
    assert all(identical(s, a) for s, a in zip(shared, alone))
    assert alone[1]["segm_class_score/AP"] == alone[0]["segm_class_score/AP"]
    assert alone[2]["segm_class_score/AP"] != alone[1]["segm_class_score/AP"]
    # without class scores the mask score is the class score: nothing gained, on every multiset
    assert alone[2]["segm_rescoring_gain/AP_low"] == alone[2]["segm_rescoring_gain/AP_high"] == 0.0


def results_file(tmp_path, results, name="results.json"):
    file = tmp_path / name
    file.write_text(json.dumps(results))
    return file


def test_a_results_file_gets_the_gains_interval_only_with_bootstrap_replicates(tiny_gt, synth, tmp_path):
    path, dataset = tiny_gt
    segm = tiny_results(dataset, synth, True)["segm"]
    file = results_file(tmp_path, segm)
    plain = score_results_file(file, path, upper_bound=True, print_fn=None).metrics
    assert "segm_rescoring_gain/AP" in plain and "segm_rescoring_gain/AP_low" not in plain
    drawn = score_results_file(file, path, upper_bound=True, bootstrap=50, print_fn=None).metrics
    direct = evaluate_results({"segm": segm}, path, calibration=False, upper_bound=True, bootstrap=50).metrics
    assert identical(drawn, direct) and "segm_rescoring_gain/AP_low" in drawn


def test_a_results_file_of_one_result_is_scored_by_its_kind(tiny_gt, synth, tmp_path):
    path, dataset = tiny_gt
    one = tiny_results(dataset, synth, True)["bbox"][:1]
    scored = score_results_file(results_file(tmp_path, one), path, print_fn=None)
    assert list(scored.results) == ["bbox"] and scored.results["bbox"] == one


def test_a_results_file_is_scored_with_the_backend_asked_for(tiny_gt, synth, tmp_path, monkeypatch):
    import msr.evaluation.scoring as scoring

    path, dataset = tiny_gt
    file = results_file(tmp_path, tiny_results(dataset, synth, True)["bbox"])
    asked = []
    make_coco_of = scoring.make_coco
    monkeypatch.setattr(
        scoring, "make_coco", lambda gt, backend: asked.append(backend) or make_coco_of(gt, backend)
    )
    score_results_file(file, path, backend="pycocotools", print_fn=None)
    score_results_file(file, path, print_fn=None)
    assert asked == ["pycocotools", "faster_coco_eval"]
