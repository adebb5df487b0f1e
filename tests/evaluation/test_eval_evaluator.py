"""COCOEvaluator in one process: update/compute/reset, saved results, and agreement with the functions."""

from __future__ import annotations

import json

import pytest

from msr.evaluation import COCOEvaluator, EvaluationError, score_results_file


def test_perfect_outputs_give_ap_one_and_full_calibration(tiny_gt, synth, tmp_path):
    ann_file, dataset = tiny_gt
    printed = []
    evaluator = COCOEvaluator(
        ann_file,
        synth.CAT_IDS,
        backend="pycocotools",
        upper_bound=True,
        results_dir=tmp_path / "res",
        print_fn=printed.append,
    )
    outputs = synth.perfect_outputs(dataset)
    ids = list(outputs)
    evaluator.update([outputs[i] for i in ids[:2]], ids[:2])  # batches of any size
    evaluator.update([outputs[i] for i in ids[2:]], ids[2:])
    m = evaluator.compute()
    assert m["bbox/AP"] == 1.0 and m["segm/AP"] == 1.0 and m["segm_upper_bound/AP"] == 1.0
    assert m["segm_class_score/AP"] == 1.0
    assert m["calib/num_matched"] == sum(1 for a in dataset["annotations"] if not a["iscrowd"])
    assert m["calib/num_unmatched"] == 0 and m["calib/mae_pred_iou"] == 0.0
    assert evaluator.calibration_data.true_iou.tolist() == [1.0] * int(m["calib/num_matched"])
    assert [p.splitlines()[0] for p in printed] == ["type=bbox", "type=segm"]

    # the saved results score the same through the CLI function, and no temporary file is left
    saved = sorted(p.name for p in (tmp_path / "res").iterdir())
    assert saved == ["bbox_results.json", "segm_results.json"]
    segm = json.loads((tmp_path / "res" / "segm_results.json").read_text())
    assert {"class_score", "mask_iou"} <= segm[0].keys()
    again = score_results_file(tmp_path / "res" / "segm_results.json", ann_file, "segm", print_fn=None)
    assert again["segm/AP"] == m["segm/AP"]


def test_reset_and_repeated_images(tiny_gt, synth):
    ann_file, dataset = tiny_gt
    evaluator = COCOEvaluator(ann_file, synth.CAT_IDS, iou_types=["bbox"], calibration=False)
    noisy, perfect = synth.noisy_outputs(dataset), synth.perfect_outputs(dataset)
    for i in noisy:
        evaluator.update([noisy[i]], [i])
    assert evaluator.compute()["bbox/AP"] < 1.0
    evaluator.reset()
    assert evaluator.num_images == 0
    for i in perfect:
        evaluator.update([perfect[i]], [i])
        evaluator.update([perfect[i]], [i])  # the same image twice on one rank counts once
    m = evaluator.compute()
    assert m["bbox/AP"] == 1.0 and not any(k.startswith(("segm", "calib")) for k in m)


def test_only_seen_images_are_evaluated(tiny_gt, synth):
    ann_file, dataset = tiny_gt
    evaluator = COCOEvaluator(ann_file, synth.CAT_IDS, per_class=False)
    outputs = synth.perfect_outputs(dataset)
    first = next(iter(outputs))
    evaluator.update([outputs[first]], [first])
    m = evaluator.compute()
    assert m["segm/AP"] == 1.0 and m["segm/AR100"] == 1.0
    assert not any("/AP-" in k for k in m)


def test_evaluation_error_reaches_the_caller(tmp_path, synth):
    evaluator = COCOEvaluator(tmp_path / "missing.json", synth.CAT_IDS)
    evaluator.update([synth.perfect_outputs(synth.make_dataset(1))[100]], [100])
    with pytest.raises(EvaluationError, match="annotation file not found: .*missing.json"):
        evaluator.compute()


def test_bad_options_are_clear_errors(tiny_gt, synth):
    ann_file, _ = tiny_gt
    with pytest.raises(EvaluationError, match="unknown iou types"):
        COCOEvaluator(ann_file, synth.CAT_IDS, iou_types=["keypoints"])
    with pytest.raises(EvaluationError, match="need 'segm'"):
        COCOEvaluator(ann_file, synth.CAT_IDS, iou_types=["bbox"])
    with pytest.raises(EvaluationError, match="unknown COCO evaluation backend 'detectron'"):
        COCOEvaluator(ann_file, synth.CAT_IDS, backend="detectron")
    evaluator = COCOEvaluator(ann_file, synth.CAT_IDS)
    with pytest.raises(EvaluationError, match="2 outputs for 1 image ids"):
        evaluator.update([{}, {}], [1])


def test_no_images_at_all_gives_coco_minus_one(tiny_gt, synth):
    ann_file, _ = tiny_gt
    m = COCOEvaluator(ann_file, synth.CAT_IDS, backend="pycocotools").compute()
    assert m["bbox/AP"] == -1.0 and m["segm/AR100"] == -1.0  # no GT among the (zero) evaluated images
    assert m["calib/num_detections"] == 0
