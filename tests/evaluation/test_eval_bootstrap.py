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
    interval_of_replicates,
)
from msr.evaluation.coco_eval import evaluate_coco
from msr.evaluation.ties import tie_bounds, tied_detections
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
    # the level pinned: each replicate's contrast is 1 - (recall thresholds reached by the drawn found
    # share) / 101, so the default interval is exactly the 2.5 % and 97.5 % percentiles of those values
    recall = draws[:, 0::2].sum(axis=1) / N
    values = 1.0 - np.searchsorted(RECALL_THRESHOLDS, recall, side="right") / 101
    low, high = np.percentile(values, [2.5, 97.5])
    assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert interval.mean == pytest.approx(values.mean(), abs=1e-12)
    ninety = np.percentile(values, 95.0)  # a 90 % interval ends one recall step lower on these draws
    assert interval.high > ninety + 0.005
    assert contrast_interval([[(1.0, perfect), (-1.0, half)]], draws, level=0.9).high == pytest.approx(
        ninety, abs=1e-12
    )


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
    with pytest.raises(ValueError, match="^paired evaluations must cover the same pictures$"):
        contrast_interval([[(1.0, perfect), (-1.0, fewer)]], draws)


def test_interval_of_replicates_gives_mean_basic_interval_p_value_and_borderline():
    values = np.linspace(-1.0, 3.0, 1001)  # percentile 2.5 %: -0.9, 97.5 %: 2.9; 0 at rank 250
    interval = interval_of_replicates(1.5, values)
    assert (interval.low, interval.high) == (pytest.approx(-0.9), pytest.approx(2.9))
    assert interval.mean == pytest.approx(1.0)
    assert (interval.basic_low, interval.basic_high) == (pytest.approx(3.0 - 2.9), pytest.approx(3.0 + 0.9))
    assert interval.p_value == pytest.approx(2 * (251 + 1) / 1002)  # 251 replicates <= 0, plus one
    assert not interval.borderline and interval.replicates == 1001
    # the lower endpoint +0.003 lies 3 ranks from 0, where the 2.5 % quantile's rank moves by ±2 x 4.9
    # ranks between bootstrap runs of 1001 replicates: it excludes 0, but only just
    near = interval_of_replicates(0.5, np.linspace(-0.025, 0.975, 1001) + 0.003)
    assert near.low == pytest.approx(0.003) and near.excludes_zero and near.borderline
    far = interval_of_replicates(0.5, np.linspace(0.1, 1.0, 1001))
    assert far.excludes_zero and not far.borderline and far.p_value == pytest.approx(2 / 1002)


def test_interval_level_is_pinned_on_a_known_array():
    values = np.arange(1001, dtype=np.float64)  # the q-th percentile of 0..1000 is 10·q
    shuffled = np.random.default_rng(0).permutation(values)  # the order of the replicates does not matter
    for given in (values, shuffled):
        interval = interval_of_replicates(0.0, given)
        assert interval.low == pytest.approx(25.0, abs=1e-9)
        assert interval.high == pytest.approx(975.0, abs=1e-9)
    ninety = interval_of_replicates(0.0, values, level=0.9)
    assert (ninety.low, ninety.high) == (pytest.approx(50.0, abs=1e-9), pytest.approx(950.0, abs=1e-9))


def test_ties_are_counted_and_bound_the_ap(synth):
    """Two pictures, one object each: a true positive in picture 2 and a false positive in picture 1 with
    the same score. COCOeval's stable order puts picture 1's false positive first (precision 1/2 at
    recall 1/2); broken for the true positive, precision 1 up to recall 1/2."""
    images = [{"id": i, "height": H, "width": W, "file_name": f"{i}.png"} for i in (1, 2)]
    anns = [synth.annotation(i, i, 3, H, W, (2, 2, 10, 10)) for i in (1, 2)]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "cat"}]}
    hit = synth.rle_of(synth.rect_mask(H, W, 2, 2, 10, 10))
    miss = synth.rle_of(synth.rect_mask(H, W, 12, 12, 16, 16))
    results = [
        {"image_id": 1, "category_id": 3, "segmentation": miss, "score": 0.9},
        {"image_id": 2, "category_id": 3, "segmentation": hit, "score": 0.9},
    ]
    evaluation = evaluate_per_image(results, gt)
    assert tied_detections(evaluation) == 2
    low, high = tie_bounds(evaluation)
    assert low == pytest.approx(coco_ap(evaluation), abs=1e-12)  # COCOeval's order is the unlucky one here
    assert high == pytest.approx(51 / 101, abs=1e-12)
    untied = evaluate_per_image([results[0], {**results[1], "score": 0.8}], gt)
    assert tied_detections(untied) == 0
    assert tie_bounds(untied) == (pytest.approx(coco_ap(untied)), pytest.approx(coco_ap(untied)))


def make_runs(tmp_path, synth, runs):
    """Write hand-made job folders ((name, head, seed, results) each) scored on one annotation file."""
    gt, _ = one_object_case(synth, found=set())
    ann_file = tmp_path / "val.json"
    ann_file.write_text(json.dumps(gt))
    for name, head, seed, results in runs:
        job = tmp_path / "runs" / name
        (job / ".hydra").mkdir(parents=True)
        (job / "eval").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"head={head}", f"seed={seed}"]))
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "head": head}))
        (job / "eval" / "segm_results.json").write_text(json.dumps(results))
        ap = 1.0 if results else 0.0
        (job / "eval" / "val_metrics.json").write_text(json.dumps({"segm/AP": ap, "ann_file": str(ann_file)}))
    return [str(tmp_path / "runs")]


def test_msr_aggregate_gives_intervals_over_pictures_and_over_runs(synth, tmp_path):
    """MS R-CNN finds every object with seed 0 and none with seed 1, the Mask R-CNN reference none with
    either: per-seed differences 1 and 0 on every picture multiset. Given these trained models the
    difference is 0.5 on every replicate; over training runs it is 0.5 ± t(0.975, 1) · sqrt(0.5 / 2):
    two seeds that disagree this much say nothing about the next training run."""
    _, found_all = one_object_case(synth, found=set(range(N)))
    runs = make_runs(tmp_path, synth, [
        ("ms0", "maskiou", 0, found_all), ("ms1", "maskiou", 1, []),
        ("mrcnn0", "none", 0, []), ("mrcnn1", "none", 1, []),
    ])
    md, csv_path = aggregate(runs, tmp_path / "study", reference="head=none", replicates=400)
    text = re.sub(r" {2,}", " ", md.read_text())
    half = 12.706204736 * 0.5
    assert (
        f"| `head=maskiou` | 2 | no | +1.0000 / +0.0000 | +0.5000 | **+0.5000 [+0.5000, +0.5000]** | "
        f"[+0.5000, +0.5000] | yes / yes | +0.5000 [{0.5 - half:+.4f}, {0.5 + half:+.4f}] | no / no | n/a |"
    ) in text
    assert "per run: `head=none` 0 / 0; `head=maskiou` 200 / 0." in text  # every hit scores 0.9
    record = json.loads(csv_path.with_suffix(".json").read_text())
    maskiou = next(v for v in record["variants"] if v["variant"] == "head=maskiou")
    assert [r["seed"] for r in maskiou["runs"]] == [0, 1]
    contrast = maskiou["contrasts"]["delta segm AP vs reference"]
    assert contrast["per seed"] == [1.0, 0.0]
    assert contrast["over training runs"]["t 95%"] == [pytest.approx(0.5 - half), pytest.approx(0.5 + half)]
    assert contrast["given these trained models"]["percentile 95%"] == [0.5, 0.5]
    with csv_path.open() as f:
        rows = {row["variant"]: row for row in __import__("csv").DictReader(f)}
    assert rows["head=maskiou"]["delta segm AP vs reference per seed"] == "1.000000;0.000000"

    proc = subprocess.run(
        [sys.executable, "-m", "msr.cli.aggregate", *runs, "--out", str(tmp_path / "redrawn"),
         "--reference", "head=none", "--bootstrap", "50", "--resample-seeds"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and "--resample-seeds is gone" in proc.stderr


def test_one_seed_gets_no_interval_over_runs_and_says_so(synth, tmp_path):
    _, found_half = one_object_case(synth, found=set(range(0, N, 2)))
    runs = make_runs(tmp_path, synth, [("ms0", "maskiou", 0, found_half), ("mrcnn0", "none", 0, [])])
    for job in (tmp_path / "runs").iterdir():  # AP of half the objects found, as the run recorded it
        metrics = job / "eval" / "val_metrics.json"
        ap = 51 / 101 if job.name == "ms0" else 0.0
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "segm/AP": ap}))
    md, _ = aggregate(runs, tmp_path / "one", reference="head=none", replicates=200)
    text = md.read_text()
    assert "1 seed: no interval over training runs (needs >= 2)" in text


def shifted(zero_at: int, count: int = 1001) -> np.ndarray:
    """Return count replicate values 0..count-1 shifted so that the value at index `zero_at` is 0."""
    return np.arange(count, dtype=np.float64) - zero_at


def test_borderline_range_is_two_binomial_deviations_of_each_endpoints_rank():
    # 1001 replicates: the 2.5 % endpoint has rank 25 and deviation sqrt(1001·0.025·0.975) = 4.94, so
    # its Monte-Carlo range is ranks 15..35 (floor(25 - 9.88), ceil(25 + 9.88)); the 97.5 % one 965..985
    inside = [15, 25, 35, 965, 975, 985]
    outside = [14, 36, 500, 964, 986]
    assert [interval_of_replicates(0.0, shifted(k)).borderline for k in inside] == [True] * len(inside)
    assert [interval_of_replicates(0.0, shifted(k)).borderline for k in outside] == [False] * len(outside)
    # 11 replicates: the ranges reach the ends of the sorted values and stop there
    assert interval_of_replicates(0.0, shifted(0, 11)).borderline  # ranks 0..2 hold 0
    assert interval_of_replicates(0.0, shifted(10, 11)).borderline  # ranks 8..10 hold 0
    assert not interval_of_replicates(0.0, shifted(3, 11)).borderline
    # every replicate 0: a zero-width interval at 0 is not a verdict that more replicates could change
    zeros = interval_of_replicates(0.0, np.zeros(1001))
    assert not zeros.borderline and zeros.p_value == 1.0 and (zeros.low, zeros.high) == (0.0, 0.0)


def test_p_value_counts_the_replicates_on_each_side_of_zero_with_ties_on_both():
    values = np.array([-1.0] * 6 + [0.0] * 2 + [1.0] * 2)  # 8 at or below 0, 4 at or above
    assert interval_of_replicates(0.0, values).p_value == pytest.approx(2 * (4 + 1) / 11)
    assert interval_of_replicates(0.0, -values).p_value == pytest.approx(2 * (4 + 1) / 11)


def two_category_case(synth, false_positive: bool):
    """Return (gt, results): picture 1 holds one object of category 3, found exactly with score 0.9;
    picture 2 holds nothing. Category 5 has no object anywhere; with `false_positive`, picture 2 has a
    category-5 detection (COCOeval leaves such a category out of the mean)."""
    images = [{"id": i, "height": H, "width": W, "file_name": f"{i}.png"} for i in (1, 2)]
    anns = [synth.annotation(1, 1, 3, H, W, (2, 2, 10, 10))]
    square = synth.rle_of(synth.rect_mask(H, W, 2, 2, 10, 10))
    results = [{"image_id": 1, "category_id": 3, "segmentation": square, "score": 0.9}]
    if false_positive:
        results.append({"image_id": 2, "category_id": 5, "segmentation": square, "score": 0.8})
    categories = [{"id": 3, "name": "three"}, {"id": 5, "name": "five"}]
    return {"images": images, "annotations": anns, "categories": categories}, results


@pytest.mark.parametrize("false_positive", [False, True])
def test_categories_without_ground_truth_leave_the_mean_and_pictures_without_any_give_minus_one(
    synth, false_positive
):
    gt, results = two_category_case(synth, false_positive)
    evaluation = evaluate_per_image(results, gt)
    assert coco_ap(evaluation) == pytest.approx(1.0)  # category 3 alone: found exactly
    assert coco_ap(evaluation, np.array([2, 0])) == pytest.approx(1.0)
    assert coco_ap(evaluation, np.array([0, 2])) == -1.0  # no ground truth drawn at all
    draws = np.array([[1, 1], [2, 0], [0, 2]] * 30)  # more than one chunk of replicates
    interval = contrast_interval([[(1.0, evaluation)]], draws)
    assert interval.estimate == pytest.approx(1.0)
    assert (interval.low, interval.high) == (-1.0, 1.0)


def test_bootstrap_draws_are_seeded_with_0_by_default_and_intervals_print_their_verdict():
    from msr.evaluation.bootstrap import Interval

    expected = np.random.default_rng(0).multinomial(5, np.full(5, 0.2), size=3)
    assert np.array_equal(bootstrap_counts(5, 3), expected)
    assert np.array_equal(bootstrap_counts(5, 3), bootstrap_counts(5, 3, seed=0))
    assert str(Interval(0.1, 0.05, 0.2)) == "+0.1000 [+0.0500, +0.2000] *"
    assert str(Interval(0.1, -0.05, 0.2)) == "+0.1000 [-0.0500, +0.2000]"


def test_a_contrast_without_terms_is_refused(synth):
    from msr.errors import EvaluationError

    gt, results = one_object_case(synth, found={0})
    evaluation = evaluate_per_image(results, gt)
    for contrasts in ([], [[]], [[(1.0, evaluation)], []]):
        with pytest.raises(EvaluationError, match="^a bootstrap contrast needs at least one term$"):
            contrast_interval(contrasts, bootstrap_counts(N, 4))


def test_a_cache_passed_in_keeps_each_evaluations_replicate_aps_for_the_next_call(synth):
    from msr.evaluation.bootstrap import replicate_aps

    gt, results = one_object_case(synth, found=set(range(0, N, 2)))
    half, none = evaluate_per_image(results, gt), evaluate_per_image([], gt)
    draws = bootstrap_counts(N, 20, seed=4)
    cache: dict = {}
    first = contrast_interval([[(1.0, half), (-1.0, none)]], draws, cache=cache)
    assert set(cache) == {id(half), id(none)}
    assert np.array_equal(cache[id(half)], replicate_aps(half, draws, {}))
    cache[id(half)] = cache[id(half)] + 1.0  # what the cache holds is what the next call uses
    again = contrast_interval([[(1.0, half), (-1.0, none)]], draws, cache=cache)
    assert again.mean == pytest.approx(first.mean + 1.0, abs=1e-12)
