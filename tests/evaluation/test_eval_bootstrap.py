"""The paired bootstrap of COCO AP: COCOeval's AP on the full set; intervals on cases of known answer."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from msr.evaluation.bootstrap import (
    RECALL_THRESHOLDS,
    bootstrap_counts,
    coco_ap,
    contrast_interval,
    evaluate_per_image,
)
from msr.evaluation.coco_eval import evaluate_coco
from msr.studies.aggregate import aggregate

N = 200  # pictures of the constructed case
H = W = 16


def one_object_case(synth, found: set[int]):
    """Return (gt, results): N pictures with one square each; the results find the squares of `found`."""
    images, anns, results = [], [], []
    for i in range(N):
        images.append({"id": i + 1, "height": H, "width": W, "file_name": f"{i}.png"})
        anns.append(synth.annotation(i + 1, i + 1, 3, H, W, (2, 2, 10, 10)))
        if i in found:
            segmentation = synth.rle_of(synth.rect_mask(H, W, 2, 2, 10, 10))
            results.append({"image_id": i + 1, "category_id": 3, "segmentation": segmentation, "score": 0.9})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "cat"}]}
    return gt, results


@pytest.mark.parametrize("iou_type,results", [("segm", "fakesegm"), ("bbox", "fakebbox")])
def test_full_set_ap_is_cocoevals(fixture_dir, iou_type, results):
    gt = fixture_dir / "instances_val2014_100.json"
    path = fixture_dir / f"instances_val2014_{results}100_results.json"
    evaluation = evaluate_per_image(path, gt, iou_type)
    expected = evaluate_coco(path, gt, iou_type, backend="pycocotools", per_class=False)[f"{iou_type}/AP"]
    assert coco_ap(evaluation) == pytest.approx(expected, abs=1e-12)
    assert len(evaluation.image_ids) == 100


def test_recall_limited_ap_and_its_interval_match_the_binomial_answer(synth):
    """A model that finds exactly the objects of half the pictures, with precision 1: its AP is the share
    of the 101 recall thresholds up to its recall, and a replicate's recall is the found share of the
    drawn pictures, a binomial proportion: sd = sqrt(0.25 / 200) = 0.0354, 95% about ±0.069."""
    gt, results = one_object_case(synth, found=set(range(0, N, 2)))
    half = evaluate_per_image(results, gt)
    assert coco_ap(half) == pytest.approx(np.count_nonzero(RECALL_THRESHOLDS <= 0.5) / 101)  # 51/101
    perfect = evaluate_per_image(one_object_case(synth, found=set(range(N)))[1], gt)
    assert coco_ap(perfect) == pytest.approx(1.0)
    draws = bootstrap_counts(N, 1000, seed=1)
    interval = contrast_interval([[(1.0, perfect), (-1.0, half)]], draws)
    assert interval.estimate == pytest.approx(1 - 51 / 101)
    assert interval.low == pytest.approx(0.505 - 0.069, abs=0.02)
    assert interval.high == pytest.approx(0.505 + 0.069, abs=0.02)
    assert interval.excludes_zero


def test_identical_sides_give_a_zero_interval_and_pairing_removes_shared_noise(synth):
    gt, results = one_object_case(synth, found=set(range(0, N, 2)))
    a, b = evaluate_per_image(results, gt), evaluate_per_image(results, gt)
    draws = bootstrap_counts(N, 300, seed=2)
    same = contrast_interval([[(1.0, a), (-1.0, b)]], draws)
    assert same.estimate == same.low == same.high == 0.0 and not same.excludes_zero
    single = contrast_interval([[(1.0, a)]], draws)  # AP itself varies from replicate to replicate
    assert single.high - single.low > 0.05


def test_seeds_are_averaged_and_must_cover_the_same_pictures(synth):
    gt, results = one_object_case(synth, found=set(range(N)))
    perfect = evaluate_per_image(results, gt)
    none = evaluate_per_image([], gt)
    assert coco_ap(none) == 0.0
    draws = bootstrap_counts(N, 50, seed=3)
    two_seeds = contrast_interval([[(1.0, perfect), (-1.0, none)], [(1.0, none), (-1.0, none)]], draws)
    assert two_seeds.estimate == pytest.approx(0.5) and two_seeds.low == pytest.approx(0.5)
    fewer = evaluate_per_image(results, gt, img_ids=list(range(1, 11)))
    with pytest.raises(ValueError, match="same pictures"):
        contrast_interval([[(1.0, perfect), (-1.0, fewer)]], draws)


def test_redrawing_the_seeds_puts_the_seed_spread_into_the_interval(synth):
    """Two seeds whose differences are exactly 1 and 0 on every picture multiset: averaged, every replicate
    gives 0.5; with the seeds redrawn, a replicate draws both seeds (0.5), the first twice (1) or the second
    twice (0), a quarter of the time each, so the 95% interval is [0, 1]."""
    gt, results = one_object_case(synth, found=set(range(N)))
    perfect, none = evaluate_per_image(results, gt), evaluate_per_image([], gt)
    contrasts = [[(1.0, perfect), (-1.0, none)], [(1.0, none), (-1.0, none)]]
    draws = bootstrap_counts(N, 400, seed=4)
    averaged = contrast_interval(contrasts, draws)
    assert averaged.estimate == averaged.low == averaged.high == pytest.approx(0.5)
    seeds = bootstrap_counts(2, 400, seed=5)
    redrawn = contrast_interval(contrasts, draws, seed_draws=seeds)
    assert redrawn.estimate == pytest.approx(0.5)
    assert (redrawn.low, redrawn.high) == (pytest.approx(0.0), pytest.approx(1.0))
    assert not redrawn.excludes_zero
    with pytest.raises(ValueError, match=r"seed draws of shape \(400, 3\) for 400 replicates of 2 contrasts"):
        contrast_interval(contrasts, draws, seed_draws=bootstrap_counts(3, 400, seed=5))


def test_msr_aggregate_redraws_seeds_on_request(synth, tmp_path):
    """msr-aggregate on hand-made runs: MS R-CNN finds every object with seed 0 and none with seed 1, the
    Mask R-CNN reference none with either. Seeds averaged, the difference is 0.5 on every replicate;
    --resample-seeds gives the interval [0, 1] and says so."""
    gt, found_all = one_object_case(synth, found=set(range(N)))
    ann_file = tmp_path / "val.json"
    ann_file.write_text(json.dumps(gt))
    for name, head, seed, results in [
        ("ms0", "maskiou", 0, found_all),
        ("ms1", "maskiou", 1, []),
        ("mrcnn0", "none", 0, []),
        ("mrcnn1", "none", 1, []),
    ]:
        job = tmp_path / "runs" / name
        (job / ".hydra").mkdir(parents=True)
        (job / "eval").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"head={head}", f"seed={seed}"]))
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "head": head}))
        (job / "eval" / "segm_results.json").write_text(json.dumps(results))
        ap = 1.0 if results else 0.0
        (job / "eval" / "val_metrics.json").write_text(json.dumps({"segm/AP": ap, "ann_file": str(ann_file)}))
    runs = [str(tmp_path / "runs")]
    averaged, _ = aggregate(runs, tmp_path / "averaged", reference="head=none", replicates=400)
    text = re.sub(r" {2,}", " ", averaged.read_text())
    assert "| `head=maskiou` | 2 | no | **+0.5000 [+0.5000, +0.5000]** |" in text
    proc = subprocess.run(
        [sys.executable, "-m", "msr.cli.aggregate", *runs, "--out", str(tmp_path / "redrawn"),
         "--reference", "head=none", "--bootstrap", "400", "--resample-seeds"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    text = re.sub(r" {2,}", " ", (tmp_path / "redrawn.md").read_text())
    assert "| `head=maskiou` | 2 | no | +0.5000 [+0.0000, +1.0000] |" in text
    assert "redrawn with replacement in every replicate (two-level bootstrap" in text
