"""COCOEvaluator in one process: bind/update/compute/reset, saved results, agreement with the functions."""

from __future__ import annotations

import json

import pytest

from msr.errors import EvaluationError
from msr.evaluation.evaluator import COCOEvaluator
from msr.evaluation.scoring import score_results_file
from msr.files import write_json_atomic


def test_perfect_outputs_give_ap_one_and_full_calibration(tiny_gt, synth, tmp_path, capsys):
    ann_file, dataset = tiny_gt
    evaluator = COCOEvaluator(backend="pycocotools", upper_bound=True, print_tables=True)
    evaluator.bind(ann_file, synth.CAT_IDS)
    outputs = synth.perfect_outputs(dataset)
    ids = list(outputs)
    evaluator.update([outputs[i] for i in ids[:2]], ids[:2])  # batches of any size
    evaluator.update([outputs[i] for i in ids[2:]], ids[2:])
    result = evaluator.compute()
    m = result.metrics
    assert m["bbox/AP"] == 1.0 and m["segm/AP"] == 1.0 and m["segm_upper_bound/AP"] == 1.0
    assert m["segm_class_score/AP"] == 1.0
    assert m["calib/num_matched"] == sum(1 for a in dataset["annotations"] if not a["iscrowd"])
    assert m["calib/num_unmatched"] == 0 and m["calib/mae_pred_iou"] == 0.0
    assert result.calibration.true_iou.tolist() == [1.0] * int(m["calib/num_matched"])
    assert result.image_ids == sorted(ids)
    printed = capsys.readouterr().out
    assert [ln for ln in printed.splitlines() if ln.startswith("type=")] == ["type=bbox", "type=segm"]
    assert printed.startswith("type=bbox\n") and printed.count("Average") == 24

    # the results, saved as the training callback saves them, score the same through the CLI function,
    # and no temporary file is left
    for iou_type, results in result.results.items():
        write_json_atomic(results, tmp_path / "res" / f"{iou_type}_results.json")
    saved = sorted(p.name for p in (tmp_path / "res").iterdir())
    assert saved == ["bbox_results.json", "segm_results.json"]
    segm = json.loads((tmp_path / "res" / "segm_results.json").read_text())
    assert {"class_score", "mask_iou"} <= segm[0].keys()
    again = score_results_file(tmp_path / "res" / "segm_results.json", ann_file, "segm", print_fn=None)
    assert again.metrics["segm/AP"] == m["segm/AP"]


def test_reset_and_repeated_images(tiny_gt, synth):
    ann_file, dataset = tiny_gt
    evaluator = COCOEvaluator(iou_types=["bbox"], calibration=False).bind(ann_file, synth.CAT_IDS)
    noisy, perfect = synth.noisy_outputs(dataset), synth.perfect_outputs(dataset)
    for i in noisy:
        evaluator.update([noisy[i]], [i])
    assert evaluator.compute().metrics["bbox/AP"] < 1.0
    evaluator.reset()
    assert evaluator.num_images == 0
    for i in perfect:
        evaluator.update([perfect[i]], [i])
        evaluator.update([perfect[i]], [i])  # the same image twice on one rank counts once
    m = evaluator.compute().metrics
    assert m["bbox/AP"] == 1.0 and not any(k.startswith(("segm", "calib")) for k in m)


def test_only_seen_images_are_evaluated(tiny_gt, synth):
    ann_file, dataset = tiny_gt
    evaluator = COCOEvaluator(per_class=False).bind(ann_file, synth.CAT_IDS)
    outputs = synth.perfect_outputs(dataset)
    first = next(iter(outputs))
    evaluator.update([outputs[first]], [first])
    m = evaluator.compute().metrics
    assert m["segm/AP"] == 1.0 and m["segm/AR100"] == 1.0
    assert not any("/AP-" in k for k in m)


def test_evaluation_error_reaches_the_caller(tmp_path, synth):
    evaluator = COCOEvaluator().bind(tmp_path / "missing.json", synth.CAT_IDS)
    evaluator.update([synth.perfect_outputs(synth.make_dataset(1))[100]], [100])
    with pytest.raises(EvaluationError, match="annotation file not found: .*missing.json"):
        evaluator.compute()


def test_bad_options_are_clear_errors(tiny_gt, synth):
    ann_file, _ = tiny_gt
    with pytest.raises(EvaluationError, match="unknown iou types"):
        COCOEvaluator(iou_types=["keypoints"])
    with pytest.raises(EvaluationError, match="need 'segm'"):
        COCOEvaluator(iou_types=["bbox"])
    with pytest.raises(EvaluationError, match="unknown COCO evaluation backend 'detectron'"):
        COCOEvaluator(backend="detectron")
    evaluator = COCOEvaluator()
    with pytest.raises(EvaluationError, match=r"call bind\(gt, label_to_cat_id\) before update"):
        evaluator.update([{}], [1])
    with pytest.raises(EvaluationError, match=r"call bind\(gt, label_to_cat_id\)"):
        evaluator.compute()
    evaluator.bind(ann_file, synth.CAT_IDS)
    with pytest.raises(EvaluationError, match="2 outputs for 1 image ids"):
        evaluator.update([{}, {}], [1])


def test_no_images_at_all_gives_coco_minus_one(tiny_gt, synth):
    ann_file, _ = tiny_gt
    m = COCOEvaluator(backend="pycocotools").bind(ann_file, synth.CAT_IDS).compute().metrics
    assert m["bbox/AP"] == -1.0 and m["segm/AR100"] == -1.0  # no GT among the (zero) evaluated images
    assert m["calib/num_detections"] == 0


def test_bound_ground_truth_is_built_once_and_rebuilt_for_another(tiny_gt, synth, tmp_path):
    ann_file, dataset = tiny_gt
    evaluator = COCOEvaluator(calibration=False).bind(ann_file, synth.CAT_IDS)
    outputs = synth.noisy_outputs(dataset)
    for i in outputs:
        evaluator.update([outputs[i]], [i])
    first = evaluator.compute()
    coco = evaluator._coco_gt
    evaluator.bind(str(ann_file), synth.CAT_IDS)  # the same file: the COCO object is kept
    again = evaluator.compute()
    assert evaluator._coco_gt is coco and again.metrics == first.metrics
    copy = tmp_path / "copy.json"
    copy.write_text(ann_file.read_text())
    evaluator.bind(copy, synth.CAT_IDS)  # another file: built again, same numbers
    assert evaluator.compute().metrics == first.metrics and evaluator._coco_gt is not coco
