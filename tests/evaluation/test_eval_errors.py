"""Mistakes a user can make end in one EvaluationError that names the file, key or id."""

from __future__ import annotations

import json

import pytest

from msr.errors import EvaluationError
from msr.evaluation.coco_eval import evaluate_coco
from msr.evaluation.scoring import score_results_file
from msr.files import write_json_atomic


@pytest.fixture
def bbox_result():
    return {"image_id": 100, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5}


def test_missing_and_malformed_files(tiny_gt, tmp_path, bbox_result):
    ann_file, _ = tiny_gt
    with pytest.raises(EvaluationError, match=r"results file not found: .*nope\.json"):
        score_results_file(tmp_path / "nope.json", ann_file)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"image_id": 1,')
    with pytest.raises(EvaluationError, match=r"results file .*broken\.json is not valid JSON.*line 1"):
        score_results_file(broken, ann_file)
    with pytest.raises(EvaluationError, match=r"annotation file not found: .*gt\.json"):
        evaluate_coco([bbox_result], tmp_path / "gt.json", "bbox")
    with pytest.raises(EvaluationError, match=r"annotation file .*broken\.json is not valid JSON"):
        evaluate_coco([bbox_result], broken, "bbox")
    no_cats = tmp_path / "no_cats.json"
    no_cats.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(EvaluationError, match=r"no_cats\.json: missing or non-list key 'categories'"):
        evaluate_coco([bbox_result], no_cats, "bbox")
    not_list = tmp_path / "dict.json"
    not_list.write_text(json.dumps({"image_id": 1}))
    with pytest.raises(EvaluationError, match=r"results file .*dict\.json: must be a JSON list"):
        score_results_file(not_list, ann_file, "bbox")


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_unknown_ids_and_missing_keys(tiny_gt, bbox_result, backend):
    ann_file, _ = tiny_gt
    with pytest.raises(EvaluationError, match=r"'image_id' values not in the ground truth: \[999\]"):
        evaluate_coco([bbox_result, {**bbox_result, "image_id": 999}], ann_file, "bbox", backend)
    with pytest.raises(EvaluationError, match=r"'category_id' values not in the ground truth: \[1\]"):
        evaluate_coco([{**bbox_result, "category_id": 1}], ann_file, "bbox", backend)
    with pytest.raises(EvaluationError, match=r"results\[1\]: missing key 'score'"):
        evaluate_coco([bbox_result, {k: v for k, v in bbox_result.items() if k != "score"}], ann_file, "bbox")
    with pytest.raises(EvaluationError, match=r"results\[0\]: missing key 'segmentation'"):
        evaluate_coco([bbox_result], ann_file, "segm", backend)
    with pytest.raises(EvaluationError, match="img_ids not in the ground truth"):
        evaluate_coco([bbox_result], ann_file, "bbox", backend, img_ids=[100, 5])
    with pytest.raises(EvaluationError, match="unknown iou type 'keypoints'"):
        evaluate_coco([bbox_result], ann_file, "keypoints", backend)


def test_bad_segmentations(tiny_gt, synth):
    ann_file, _ = tiny_gt
    ok = {"image_id": 100, "category_id": 3, "score": 0.5}
    wrong_size = {**ok, "segmentation": synth.rle_of(synth.rect_mask(10, 10, 0, 0, 2, 2))}
    with pytest.raises(EvaluationError, match=r"results\[0\]: 'segmentation' size \[10, 10\] .* image 100"):
        evaluate_coco([wrong_size], ann_file, "segm")
    polygon = {**ok, "segmentation": [[0, 0, 5, 0, 5, 5]]}
    with pytest.raises(EvaluationError, match="must be an RLE dict"):
        evaluate_coco([polygon], ann_file, "segm")


def test_write_json_atomic_replaces_whole_file(tmp_path):
    path = write_json_atomic([{"a": 1}], tmp_path / "sub" / "r.json")
    write_json_atomic([{"b": 2}], path)
    assert json.loads(path.read_text()) == [{"b": 2}]
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic([Unserialisable()], path)
    assert json.loads(path.read_text()) == [{"b": 2}]  # the old content survives a failed write
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
