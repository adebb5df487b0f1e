"""A known answer for the bootstrap: its AP on a picture multiset is COCOeval's AP on a data set in which
those pictures really are duplicated (new picture and annotation ids), with several categories, crowd
regions, false positives, detections on crowds and untied scores."""

from __future__ import annotations

import numpy as np
import pytest

from msr.evaluation.bootstrap import bootstrap_counts, coco_ap, evaluate_per_image
from msr.evaluation.coco_eval import evaluate_coco

H, W = 40, 48
PICTURES = 12


def make_case(synth, seed: int = 0) -> tuple[dict, list[dict]]:
    """Return (gt, segm results): PICTURES pictures of 1-4 rectangles in 3 categories, a crowd region in
    every third picture; results: shifted copies of most objects, false positives, a detection on each
    crowd region; every score distinct."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(PICTURES):
        image_id = 10 + 3 * i
        images.append({"id": image_id, "height": H, "width": W, "file_name": f"{image_id}.png"})
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = int(rng.integers(0, W - 16)), int(rng.integers(0, H - 16))
            box = (x0, y0, x0 + int(rng.integers(5, 16)), y0 + int(rng.integers(5, 16)))
            cat = synth.CAT_IDS[int(rng.integers(0, 3))]
            anns.append(synth.annotation(len(anns) + 1, image_id, cat, H, W, box))
            if rng.random() < 0.8:  # found, more or less well
                dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
                found = (max(box[0] + dx, 0), max(box[1] + dy, 0), min(box[2] + dx, W), min(box[3] + dy, H))
                results.append((image_id, cat, found))
        if i % 3 == 0:
            crowd = (W - 14, H - 14, W - 1, H - 1)
            anns.append(synth.annotation(len(anns) + 1, image_id, synth.CAT_IDS[0], H, W, crowd, crowd=1))
            results.append((image_id, synth.CAT_IDS[0], (W - 13, H - 13, W - 2, H - 2)))  # ignored
        for _ in range(int(rng.integers(0, 3))):  # false positives
            x0, y0 = int(rng.integers(0, W - 8)), int(rng.integers(0, H - 8))
            results.append((image_id, synth.CAT_IDS[int(rng.integers(0, 3))], (x0, y0, x0 + 6, y0 + 6)))
    scores = rng.permutation(len(results)) / len(results) * 0.9 + 0.05  # distinct
    segm = [
        {"image_id": image_id, "category_id": cat, "score": float(score),
         "segmentation": synth.rle_of(synth.rect_mask(H, W, *box))}
        for (image_id, cat, box), score in zip(results, scores)
    ]
    gt = {"images": images, "annotations": anns, "categories": [dict(c) for c in synth.CATEGORIES]}
    return gt, segm


def duplicated(gt: dict, results: list[dict], counts: np.ndarray) -> tuple[dict, list[dict]]:
    """Return (gt, results) in which picture i (sorted by id) appears counts[i] times under new ids, each
    copy with its own copies of the annotations and detections."""
    images, anns, out = [], [], []
    next_id = 1000
    for image, count in zip(sorted(gt["images"], key=lambda im: im["id"]), counts):
        for _ in range(int(count)):
            next_id += 1
            images.append({**image, "id": next_id, "file_name": f"{next_id}.png"})
            for ann in (a for a in gt["annotations"] if a["image_id"] == image["id"]):
                anns.append({**ann, "id": len(anns) + 1, "image_id": next_id})
            out += [{**r, "image_id": next_id} for r in results if r["image_id"] == image["id"]]
    return {**gt, "images": images, "annotations": anns}, out


def test_the_case_has_what_it_claims(synth):
    gt, results = make_case(synth)
    assert len({r["score"] for r in results}) == len(results)
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 4
    assert len({a["category_id"] for a in gt["annotations"]}) == 3


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_bootstrap_ap_of_a_multiset_is_cocoevals_on_really_duplicated_pictures(synth, backend):
    gt, results = make_case(synth)
    evaluation = evaluate_per_image(results, gt)
    draws = bootstrap_counts(PICTURES, 4, seed=7)
    draws = np.vstack([draws, np.r_[np.zeros(PICTURES - 3, int), [4, 4, 4]]])  # three pictures, 4 times
    assert (draws == 0).any() and (draws >= 2).any()
    for counts in draws:
        dup_gt, dup_results = duplicated(gt, results, counts)
        expected = evaluate_coco(dup_results, dup_gt, "segm", backend=backend, per_class=False)["segm/AP"]
        assert coco_ap(evaluation, counts) == pytest.approx(expected, abs=1e-12), counts
