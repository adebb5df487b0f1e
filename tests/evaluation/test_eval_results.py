"""Model outputs → COCO results: encoding, score keys, category mapping, and a perfect-AP round trip."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from msr.data.segmentation import encode_masks
from msr.errors import EvaluationError
from msr.evaluation.coco_eval import evaluate_coco
from msr.evaluation.results import predictions_to_coco

# pycocotools' own decode() trips a NumPy 2 deprecation inside the library
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def test_encode_masks_matches_per_mask_encoding():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 23, 31, generator=g) > 0.6
    rles = encode_masks(masks)
    assert len(rles) == 5
    for m, rle in zip(masks, rles):
        assert isinstance(rle["counts"], str) and rle["size"] == [23, 31]
        ref = mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
        assert rle["counts"] == ref["counts"].decode("ascii")
        assert np.array_equal(mask_utils.decode(rle), m.numpy().astype(np.uint8))
    assert encode_masks(torch.zeros(0, 4, 4, dtype=torch.bool)) == []


def test_threshold_is_probability_at_least_half():
    probs = torch.tensor([[[[0.49, 0.5, 0.51, 0.9]]]])  # [1, 1, 1, 4]
    out = {
        "boxes": torch.tensor([[0.0, 0.0, 4.0, 1.0]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.8]),
    }
    _, segm = predictions_to_coco({**out, "masks": probs}, 1, [5])
    assert mask_utils.decode(segm[0]["segmentation"]).tolist() == [[0, 1, 1, 1]]
    _, segm = predictions_to_coco({**out, "masks": probs}, 1, [5], mask_threshold=0.6)
    assert mask_utils.decode(segm[0]["segmentation"]).tolist() == [[0, 0, 0, 1]]


def test_result_fields_for_ms_rcnn_and_baseline():
    out = {
        "boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 5.0, 5.0]]),
        "labels": torch.tensor([2, 1]),
        "scores": torch.tensor([0.9, 0.5]),
        "masks": torch.rand(2, 1, 64, 48),
        "mask_ious": torch.tensor([0.5, 0.8]),
        "mask_scores": torch.tensor([0.45, 0.4]),
    }
    bbox, segm = predictions_to_coco(out, 42, {1: 11, 2: 13})
    assert bbox[0] == {
        "image_id": 42,
        "category_id": 13,
        "bbox": [10.0, 20.0, 20.0, 40.0],
        "score": pytest.approx(0.9),
    }
    assert bbox[1]["category_id"] == 11
    assert [r["score"] for r in segm] == pytest.approx([0.45, 0.4])
    assert [r["class_score"] for r in segm] == pytest.approx([0.9, 0.5])
    assert [r["mask_iou"] for r in segm] == pytest.approx([0.5, 0.8])
    assert all("bbox" not in r for r in segm)
    json.dumps(bbox + segm)  # plain JSON types only

    # mask_ious without mask_scores: the score is the box score (only the model computes mask scores)
    no_ms = {k: v for k, v in out.items() if k != "mask_scores"}
    _, segm = predictions_to_coco(no_ms, 42, {1: 11, 2: 13})
    assert [r["score"] for r in segm] == pytest.approx([0.9, 0.5])
    assert [r["mask_iou"] for r in segm] == pytest.approx([0.5, 0.8])

    # Mask R-CNN baseline: mask score = box score, no mask_iou key
    baseline = {k: v for k, v in out.items() if k not in ("mask_ious", "mask_scores")}
    _, segm = predictions_to_coco(baseline, 42, {1: 11, 2: 13})
    assert [r["score"] for r in segm] == pytest.approx([0.9, 0.5])
    assert all("mask_iou" not in r for r in segm)

    # boxes only: no segm results
    bbox, segm = predictions_to_coco({k: out[k] for k in ("boxes", "labels", "scores")}, 42, [11, 13])
    assert len(bbox) == 2 and segm == []


def test_no_detections():
    out = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "scores": torch.zeros(0),
        "masks": torch.zeros(0, 1, 8, 8),
    }
    assert predictions_to_coco(out, 3, [1]) == ([], [])


@pytest.mark.parametrize("mapping_kind", ["list", "dict"])
@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_perfect_predictions_score_ap_one(tiny_gt, synth, mapping_kind, backend):
    path, dataset = tiny_gt
    mapping = synth.CAT_IDS if mapping_kind == "list" else {i + 1: c for i, c in enumerate(synth.CAT_IDS)}
    bbox, segm = [], []
    for image_id, out in synth.perfect_outputs(dataset).items():
        b, s = predictions_to_coco(out, image_id, mapping)
        bbox += b
        segm += s
    assert len(segm) == sum(1 for a in dataset["annotations"] if not a["iscrowd"])
    for iou_type, results in (("bbox", bbox), ("segm", segm)):
        m = evaluate_coco(results, path, iou_type, backend)
        assert m[f"{iou_type}/AP"] == 1.0
        assert m[f"{iou_type}/AR100"] == 1.0
        assert m[f"{iou_type}/AP-traffic light"] == 1.0


def test_unknown_label_is_a_clear_error():
    out = {"boxes": torch.zeros(2, 4), "labels": torch.tensor([1, 4]), "scores": torch.ones(2)}
    with pytest.raises(EvaluationError, match=r"labels \[4\].*maps labels \[1, 2, 3\]"):
        predictions_to_coco(out, 7, [3, 7, 11])


def test_malformed_output_is_a_clear_error():
    out = {"boxes": torch.zeros(2, 4), "labels": torch.tensor([1, 1]), "scores": torch.ones(3)}
    with pytest.raises(EvaluationError, match="'scores' of image 7 has 3 entries"):
        predictions_to_coco(out, 7, [3])
    with pytest.raises(EvaluationError, match="no key 'labels'"):
        predictions_to_coco({"boxes": torch.zeros(1, 4), "scores": torch.ones(1)}, 7, [3])
    with pytest.raises(EvaluationError, match="'masks' of image 7"):
        predictions_to_coco({**out, "scores": torch.ones(2), "masks": torch.zeros(3, 1, 4, 4)}, 7, [3])
