"""The one COCO annotation validator, shared by the data sets and the evaluation's ground truth."""

from __future__ import annotations

import copy

import pytest

from msr.data.coco_json import validate_coco_instances
from msr.errors import DatasetError, EvaluationError
from msr.evaluation.ground_truth import load_ground_truth

VALID = {
    "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 5}],
    "annotations": [
        {"id": 7, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2], "segmentation": [[0, 0, 2, 0, 2, 2]]}
    ],
    "categories": [{"id": 3, "name": "cat"}],
}


def broken(edit) -> dict:
    """Return a deep copy of VALID changed by `edit`."""
    data = copy.deepcopy(VALID)
    edit(data)
    return data


def test_valid_file_passes_both_ways() -> None:
    assert validate_coco_instances(VALID, "x.json") is VALID
    assert load_ground_truth(VALID) is VALID
    for iscrowd in (0, 1, 1.0, True):
        crowd = broken(lambda d, value=iscrowd: d["annotations"][0].update(iscrowd=value))
        assert validate_coco_instances(crowd, "x.json") is crowd


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("categories"), r"x\.json: missing or non-list key 'categories'$"),
        (lambda d: d.update(images={}), r"x\.json: missing or non-list key 'images' \(got dict\)"),
        (lambda d: d["images"][0].pop("height"), r"images\[0\] \(id 1\) is missing required key 'height'"),
        (lambda d: d["categories"].append({"id": 3, "name": "dup"}), "duplicate category ids"),
        (lambda d: d["annotations"][0].update(image_id=9), "annotation 7 refers to unknown image_id 9"),
        (lambda d: d["annotations"][0].update(category_id=9), "annotation 7 refers to unknown category_id 9"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2]), r"annotation 7 has a malformed 'bbox' \[1, 2\]"),
        (lambda d: d["annotations"].append("text"), r"annotations\[1\] must be an object"),
        (lambda d: d["annotations"][0].update(iscrowd=None), r"annotation 7 has 'iscrowd' None: it must"),
        (lambda d: d["annotations"][0].update(iscrowd="yes"), r"annotation 7 has 'iscrowd' 'yes': it must"),
        (lambda d: d["annotations"][0].update(iscrowd=0.5), r"annotation 7 has 'iscrowd' 0\.5: .*fix or"),
    ],
)
def test_every_check_raises_the_callers_error(edit, message: str) -> None:
    data = broken(edit)
    with pytest.raises(DatasetError, match=message):
        validate_coco_instances(data, "x.json")
    with pytest.raises(EvaluationError, match=message):
        validate_coco_instances(data, "x.json", require_files=False, error=EvaluationError)


@pytest.mark.parametrize(
    ("section", "key"), [("images", "file_name"), ("annotations", "bbox"), ("annotations", "segmentation")]
)
def test_ground_truth_needs_no_file_names_nor_geometry(section: str, key: str) -> None:
    data = broken(lambda d: d[section][0].pop(key))
    missing = rf"x\.json: {section}\[0\] \(id \d+\) is missing required key '{key}'"
    with pytest.raises(DatasetError, match=missing):
        validate_coco_instances(data, "x.json")
    assert load_ground_truth(data) is data


def test_ground_truth_errors_name_the_source(tmp_path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    top = r"^annotation file .*list\.json: expected a JSON object at top level, got list$"
    with pytest.raises(EvaluationError, match=top):
        load_ground_truth(listed)
    with pytest.raises(EvaluationError, match=r"^ground truth: annotation 7 refers to unknown image_id 9"):
        load_ground_truth(broken(lambda d: d["annotations"][0].update(image_id=9)))
