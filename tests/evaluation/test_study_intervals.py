"""A study's paired intervals (msr.studies.intervals): which runs pair, what each contrast is made of, the
records and cells it is written as, and how a run's saved results and annotation file are read."""

from __future__ import annotations

import json
import logging
import math
import re

import numpy as np
import pytest
import yaml
from support.annotations_only import AnnotationsOnly

from msr.errors import EvaluationError, UserError
from msr.evaluation.bootstrap import (
    Interval,
    bootstrap_counts,
    coco_ap,
    contrast_interval,
    contrast_replicates,
    evaluate_per_image,
)
from msr.studies.intervals import (
    QUANTITIES,
    ContrastIntervals,
    RunPictures,
    VariantIntervals,
    _csv_cells,
    annotation_file,
    describe,
    describe_runs,
    interval_columns,
    interval_record,
    read_trunk,
    run_pictures,
    study_intervals,
)
from msr.studies.over_runs import RunInterval, holm, over_runs_interval

N = 20  # pictures, one square object each
H = W = 16
SQUARE = (2, 2, 10, 10)
SEGM, CLASS, BBOX, GAIN, GAIN_DIFF = (key for key, _ in QUANTITIES)


def ground_truth(synth) -> dict:
    """Return N pictures with one square of category 3 each."""
    images = [{"id": i, "height": H, "width": W, "file_name": f"{i}.png"} for i in range(1, N + 1)]
    anns = [synth.annotation(i, i, 3, H, W, SQUARE) for i in range(1, N + 1)]
    return {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "cat"}]}


def hit(synth, image_id: int, score: float, box: tuple = SQUARE, **extra) -> dict:
    """Return a segm result of the square `box` in picture `image_id`."""
    mask = synth.rle_of(synth.rect_mask(H, W, *box))
    return {"image_id": image_id, "category_id": 3, "segmentation": mask, "score": score, **extra}


@pytest.fixture(scope="module")
def evals(synth) -> dict:
    """{k: the evaluation of a model that finds exactly the objects of pictures 1..k}: distinct APs."""
    gt = ground_truth(synth)
    return {
        k: evaluate_per_image([hit(synth, i, 0.9) for i in range(1, k + 1)], gt) for k in (0, 5, 10, 15, 20)
    }


@pytest.fixture(scope="module")
def ap(evals) -> dict:
    return {k: coco_ap(e) for k, e in evals.items()}


def run(evals, seed, mask, cls=None, box=None, trunk=None) -> RunPictures:
    """Return a run (keys of `evals`: by mask score, by class score, bbox) with seed-tagged tie records."""
    return RunPictures(
        seed,
        trunk,
        evals[mask],
        None if cls is None else evals[cls],
        None if box is None else evals[box],
        tied_class_scores=seed + 1,
        class_score_tie_bounds=(0.25, 0.5),
    )


def masks_of(seed: int) -> int:
    """The MS R-CNN reference's masks: pictures 1..15 found with even seeds, all 20 with odd ones."""
    return 20 if seed % 2 else 15


@pytest.fixture(scope="module")
def study(evals) -> list[list[RunPictures]]:
    """[MS R-CNN (the reference, 6 seeds), Mask R-CNN (6 paired seeds and seed 9), MS R-CNN without bbox
    results (seed 0 paired, seed 9 not)]; the first two share each seed's trunk."""
    reference = [run(evals, s, masks_of(s), 5, 10, f"t{s}") for s in range(6)]
    mask_rcnn = [run(evals, s, 10, None, 5, f"t{s}") for s in range(6)] + [run(evals, 9, 0, None, 5, "t9")]
    no_bbox = [run(evals, 0, 20, 10), run(evals, 9, 15, 0)]
    return [reference, mask_rcnn, no_bbox]


@pytest.fixture
def found(study) -> list[VariantIntervals]:
    """The study's intervals, computed in each test that reads them: mutmut counts a test as covering only
    the code the test itself runs, not what a fixture computed for an earlier one."""
    return study_intervals(study, 0, replicates=200, seed=3)


def test_each_variant_gets_the_contrasts_its_runs_define(found):
    reference, mask_rcnn, no_bbox = found
    assert set(reference.contrasts) == {GAIN}  # no contrast with itself
    assert set(mask_rcnn.contrasts) == {SEGM, CLASS, BBOX}  # no predicted IoU: no gain
    assert set(no_bbox.contrasts) == {SEGM, CLASS, GAIN, GAIN_DIFF}  # no bbox results
    assert (mask_rcnn.segm_ap, mask_rcnn.gain, no_bbox.gain_vs_reference) == (
        mask_rcnn.contrasts[SEGM],
        None,
        no_bbox.contrasts[GAIN_DIFF],
    )


def test_each_contrast_is_the_signed_ap_difference_of_its_paired_runs(found, ap):
    reference, mask_rcnn, no_bbox = found
    masks = [ap[masks_of(s)] for s in range(6)]

    def per_seed(variant, key):
        return variant.contrasts[key].runs.per_seed

    assert per_seed(mask_rcnn, SEGM) == pytest.approx([ap[10] - m for m in masks], abs=1e-12)
    # Mask R-CNN ranks by its class score already; the reference's masks ranked by class score: pictures 1..5
    assert per_seed(mask_rcnn, CLASS) == pytest.approx([ap[10] - ap[5]] * 6, abs=1e-12)
    assert per_seed(mask_rcnn, BBOX) == pytest.approx([ap[5] - ap[10]] * 6, abs=1e-12)
    assert per_seed(reference, GAIN) == pytest.approx([m - ap[5] for m in masks], abs=1e-12)
    # the gain is over every run of the variant, paired or not
    assert per_seed(no_bbox, GAIN) == pytest.approx([ap[20] - ap[10], ap[15] - ap[0]], abs=1e-12)
    assert per_seed(no_bbox, GAIN_DIFF) == pytest.approx([(ap[20] - ap[10]) - (ap[15] - ap[5])], abs=1e-12)
    assert per_seed(no_bbox, SEGM) == pytest.approx([ap[20] - ap[15]], abs=1e-12)
    assert per_seed(no_bbox, CLASS) == pytest.approx([ap[10] - ap[5]], abs=1e-12)


def test_both_intervals_come_from_the_same_seeded_picture_draws(found, evals):
    mask_rcnn = found[1].contrasts[SEGM]
    terms = [[(1.0, evals[10]), (-1.0, evals[masks_of(s)])] for s in range(6)]
    draws = bootstrap_counts(N, 200, 3)
    assert mask_rcnn.pictures == contrast_interval(terms, draws)
    assert mask_rcnn.pictures.replicates == 200
    full, replicates = contrast_replicates(terms, draws)
    picture_var = float(np.var(replicates.mean(axis=0), ddof=1))
    assert picture_var > 0
    assert mask_rcnn.runs == over_runs_interval(full, picture_var)
    assert mask_rcnn.runs.picture_sd == pytest.approx(math.sqrt(picture_var), abs=1e-15)
    # 6 seeds: the median's distribution-free interval is [min, max] (coverage 1 - 2/64)
    assert mask_rcnn.median == (float(full.min()), float(full.max()))
    assert found[2].contrasts[SEGM].median is None  # one seed


def test_seeds_pair_with_the_reference_and_a_shared_trunk_is_reported(found):
    assert [v.seeds for v in found] == [6, 6, 1]
    assert [v.shared_trunk for v in found] == [True, True, False]
    assert all(isinstance(v.shared_trunk, bool) and isinstance(v.seeds, int) for v in found)
    bounds = "class-score segm AP, ties against / for true positives"
    assert found[2].runs == (
        {"seed": 0, "tied class scores": 1, bounds: [0.25, 0.5]},
        {"seed": 9, "tied class scores": 10, bounds: [0.25, 0.5]},
    )


def test_different_trunks_are_not_shared(evals):
    variants = [[run(evals, 0, 10, trunk="a")], [run(evals, 0, 20, trunk="b")]]
    assert [v.shared_trunk for v in study_intervals(variants, 0, replicates=5)] == [True, False]


def test_holm_verdicts_are_taken_over_the_variants_of_each_contrast(found):
    holders = found[1:]
    for key in (SEGM, CLASS):
        contrasts = [v.contrasts[key] for v in holders]
        assert [c.holm_pictures for c in contrasts] == holm([c.pictures.p_value for c in contrasts])
        assert [c.holm_runs for c in contrasts] == holm([c.runs.p_value for c in contrasts])
    # Mask R-CNN's masks are worse on every seed and every multiset: both verdicts survive Holm
    assert found[1].segm_ap.holm_pictures is True and found[1].segm_ap.holm_runs is True


def test_a_study_without_results_has_nothing_to_pair():
    assert study_intervals([[], []], 0) == [VariantIntervals(0, False), VariantIntervals(0, False)]


def test_default_draws_are_1000_seeded_with_0(evals):
    found = study_intervals([[run(evals, 0, 20, 5)], [run(evals, 0, 10)]], 1)
    terms = [[(1.0, evals[20]), (-1.0, evals[10])]]
    assert found[0].segm_ap.pictures == contrast_interval(terms, bootstrap_counts(N, 1000, 0))
    assert found[0].segm_ap.pictures.replicates == 1000


@pytest.mark.parametrize("replicates", [1, 2])
def test_picture_variance_needs_two_replicates(evals, replicates):
    found = study_intervals([[run(evals, 0, 20, 5)], [run(evals, 0, 10)]], 1, replicates=replicates, seed=1)
    _, values = contrast_replicates(
        [[(1.0, evals[20]), (-1.0, evals[5])]], bootstrap_counts(N, replicates, 1)
    )
    expected = float(np.var(values.mean(axis=0), ddof=1)) if replicates == 2 else 0.0
    assert replicates == 1 or expected > 0
    assert found[0].gain.runs.picture_sd == pytest.approx(math.sqrt(expected), abs=1e-15)


# ---- records, CSV cells and Markdown cells -------------------------------------------------------------

SIX = ContrastIntervals(
    Interval(0.02, 0.01, 0.03, 0.021, 0.011, 0.031, True, 0.004, 1000),
    RunInterval((0.01, 0.02, 0.03, 0.01, 0.02, 0.03), 0.02, 0.012, 0.028, 5.0, 0.0089, 0.003, 0.001),
    (0.01, 0.03),
    holm_pictures=True,
    holm_runs=False,
)
ONE = ContrastIntervals(
    Interval(-0.02, -0.05, 0.01, -0.019, -0.05, 0.01, False, 0.3, 1000),
    over_runs_interval([-0.02], 1e-4),
    None,
)


def nan_as_text(cells: list) -> list:
    return ["nan" if isinstance(c, float) and math.isnan(c) else c for c in cells]


def test_interval_record_holds_both_intervals_under_their_names():
    assert interval_record(SIX) == {
        "per seed": [0.01, 0.02, 0.03, 0.01, 0.02, 0.03],
        "given these trained models": {
            "estimate": 0.02,
            "bootstrap mean": 0.021,
            "percentile 95%": [0.01, 0.03],
            "basic 95%": [0.011, 0.031],
            "p": 0.004,
            "replicates": 1000,
            "excludes 0": True,
            "borderline": True,
            "excludes 0, Holm": True,
        },
        "over training runs": {
            "seeds": 6,
            "estimate": 0.02,
            "t 95%": [0.012, 0.028],
            "df": 5.0,
            "run SD": 0.0089,
            "picture SD": 0.003,
            "p": 0.001,
            "excludes 0": True,
            "excludes 0, Holm": False,
            "note": "",
            "median, distribution-free 95%": [0.01, 0.03],
        },
    }


def test_interval_record_of_one_seed_has_no_t_interval_and_no_median():
    runs = interval_record(ONE)["over training runs"]
    assert runs["t 95%"] is None and runs["median, distribution-free 95%"] is None
    assert runs["note"] == "1 seed: no interval over training runs (needs >= 2)"
    assert runs["picture SD"] == pytest.approx(0.01) and runs["excludes 0"] is False


def test_csv_cells_of_a_contrast_and_of_a_missing_one():
    assert _csv_cells(SIX) == [
        0.02,
        0.01,
        0.03,
        0.021,
        0.011,
        0.031,
        0.004,
        1000,
        True,
        True,
        True,
        0.012,
        0.028,
        5.0,
        0.0089,
        True,
        False,
        0.01,
        0.03,
        "0.010000;0.020000;0.030000;0.010000;0.020000;0.030000",
    ]
    assert nan_as_text(_csv_cells(ONE)) == [
        -0.02,
        -0.05,
        0.01,
        -0.019,
        -0.05,
        0.01,
        0.3,
        1000,
        False,
        False,
        False,
        "nan",
        "nan",
        "nan",
        "nan",
        "",
        "",
        "nan",
        "nan",
        "-0.020000",
    ]
    assert nan_as_text(_csv_cells(None)) == ["nan"] * 8 + ["", "", ""] + ["nan"] * 4 + [
        "",
        "",
        "nan",
        "nan",
        "",
    ]


def test_interval_columns_name_every_cell_of_every_contrast():
    columns, rows = interval_columns([VariantIntervals(6, True, {SEGM: SIX}), VariantIntervals(0, False)])
    assert columns[:2] == ["paired seeds", "shared trunk"]
    assert len(columns) == 2 + 20 * len(QUANTITIES) == len(rows[0]) == len(rows[1])
    row = dict(zip(columns, rows[0]))
    assert (row["paired seeds"], row["shared trunk"]) == (6, True)
    assert [
        row[f"{SEGM} {name}"] for name in ("low", "over runs high", "median high", "excludes 0 Holm")
    ] == [
        0.01,
        0.028,
        0.03,
        True,
    ]
    assert math.isnan(row[f"{BBOX} low"]) and row[f"{BBOX} per seed"] == ""


def test_markdown_cells_bold_an_interval_that_excludes_zero_and_mark_a_borderline_one():
    assert describe(None) == "n/a"
    assert describe(SIX.pictures) == "**+0.0200 [+0.0100, +0.0300]** ≈"
    assert describe(ONE.pictures) == "-0.0200 [-0.0500, +0.0100]"
    assert describe_runs(SIX.runs) == "**+0.0200 [+0.0120, +0.0280]**"
    assert describe_runs(over_runs_interval([0.01, -0.01])).startswith("+0.0000 [-")
    assert describe_runs(ONE.runs) == "1 seed: no interval over training runs (needs >= 2)"


# ---- reading a run's saved results -----------------------------------------------------------------------


def write_run(folder, results, config, metrics, bbox=None, run_config=None):
    """Write a run folder: .hydra/config.yaml, eval/segm_results.json, eval/val_metrics.json and,
    when given, eval/bbox_results.json and run_config.json."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / "eval").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(
        config if isinstance(config, str) else yaml.safe_dump(config)
    )
    (folder / "eval" / "segm_results.json").write_text(json.dumps(results))
    (folder / "eval" / "val_metrics.json").write_text(json.dumps(metrics))
    if bbox is not None:
        (folder / "eval" / "bbox_results.json").write_text(json.dumps(bbox))
    if run_config is not None:
        (folder / "run_config.json").write_text(json.dumps(run_config))
    return folder


@pytest.fixture
def gt_file(tmp_path, synth):
    path = tmp_path / "val.json"
    path.write_text(json.dumps(ground_truth(synth)))
    return path


def ms_rcnn_results(synth) -> list[dict]:
    """Every object found (mask scores all different, class scores all 0.6), and a miss in picture 1 that
    the class score ranks first and the mask score last."""
    found = [hit(synth, i, 0.9 - 0.01 * i, class_score=0.6, mask_iou=0.8) for i in range(1, N + 1)]
    return [*found, hit(synth, 1, 0.05, (12, 12, 16, 16), class_score=0.95, mask_iou=0.1)]


def test_run_pictures_evaluates_by_mask_score_by_class_score_and_by_box(tmp_path, synth, gt_file, evals):
    boxes = [{"image_id": i, "category_id": 3, "bbox": [2, 2, 8, 8], "score": 0.9} for i in range(1, 11)]
    folder = write_run(
        tmp_path / "ms",
        ms_rcnn_results(synth),
        {"seed": 7},
        {"segm/AP": 1.0, "ann_file": str(gt_file)},
        bbox=boxes,
        run_config={"trunk": {"key": "k1"}},
    )
    pictures = run_pictures(folder, {})
    assert (pictures.seed, pictures.trunk) == (7, "k1")
    assert coco_ap(pictures.by_mask_score) == pytest.approx(1.0)
    # ranked by class score the miss comes first: precision 20/21 at every recall
    assert coco_ap(pictures.by_class_score) == pytest.approx(20 / 21)
    assert pictures.class_ranked is pictures.by_class_score
    assert coco_ap(pictures.bbox) == pytest.approx(coco_ap(evals[10]))  # the boxes of pictures 1..10
    assert np.array_equal(pictures.bbox.image_ids, pictures.by_mask_score.image_ids)
    # the 20 found objects tie on their class score; all are true positives, so the AP does not move
    assert pictures.tied_class_scores == 20
    assert pictures.class_score_tie_bounds == (pytest.approx(20 / 21), pytest.approx(20 / 21))


def test_run_pictures_of_mask_rcnn_ranks_by_its_only_score(tmp_path, synth, gt_file):
    results = [hit(synth, i, 0.5) for i in range(1, 11)]
    folder = write_run(tmp_path / "mrcnn", results, "", {"ann_file": str(gt_file)})
    pictures = run_pictures(folder, {})
    assert pictures.by_class_score is None and pictures.bbox is None and pictures.trunk is None
    assert pictures.seed == 0  # an empty config: seed 0
    assert pictures.class_ranked is pictures.by_mask_score and pictures.tied_class_scores == 10


def test_run_pictures_without_segm_results_is_none(tmp_path, gt_file):
    folder = write_run(tmp_path / "run", [], {"seed": 1}, {"ann_file": str(gt_file)})
    (folder / "eval" / "segm_results.json").unlink()
    assert run_pictures(folder, {}) is None


def test_run_pictures_refuses_results_that_do_not_score_the_recorded_ap(tmp_path, synth, gt_file):
    folder = write_run(
        tmp_path / "ms", ms_rcnn_results(synth), {"seed": 7}, {"segm/AP": 0.5, "ann_file": str(gt_file)}
    )
    message = (
        f"{folder / 'eval' / 'segm_results.json'} scores segm AP 1.000000 against {gt_file}, but the run "
        "recorded 0.500000: these are not the annotations it was evaluated on"
    )
    with pytest.raises(EvaluationError, match=re.escape(message)):
        run_pictures(folder, {})


def test_run_pictures_accepts_a_recorded_ap_within_1e6(tmp_path, gt_file):
    folder = write_run(tmp_path / "none", [], {"seed": 2}, {"segm/AP": 1e-6, "ann_file": str(gt_file)})
    pictures = run_pictures(folder, {})
    assert coco_ap(pictures.by_mask_score) == 0.0 and pictures.seed == 2


@pytest.mark.parametrize("name", ["segm_results.json", "bbox_results.json"])
def test_a_broken_results_file_is_named(tmp_path, synth, gt_file, name):
    folder = write_run(
        tmp_path / "ms", ms_rcnn_results(synth), {"seed": 7}, {"ann_file": str(gt_file)}, bbox=[]
    )
    (folder / "eval" / name).write_text("[{")
    with pytest.raises(
        UserError, match=re.escape(f"results file {folder / 'eval' / name} is not valid JSON")
    ):
        run_pictures(folder, {})


def test_a_missing_metrics_file_is_named(tmp_path, gt_file):
    folder = write_run(tmp_path / "run", [], {"seed": 1}, {"ann_file": str(gt_file)})
    (folder / "eval" / "val_metrics.json").unlink()
    with pytest.raises(
        UserError, match=re.escape(f"metrics file not found: {folder / 'eval' / 'val_metrics.json'}")
    ):
        run_pictures(folder, {})


def data_config(folder) -> dict:
    """A run config whose data section resolves `${root}` to `folder`."""
    target = f"{AnnotationsOnly.__module__}.{AnnotationsOnly.__name__}"
    return {
        "seed": 3,
        "root": str(folder),
        "data": {"_target_": target, "folder": "${root}", "names": ["val.json"]},
    }


def test_a_moved_annotation_file_falls_back_to_each_runs_data_config_once(tmp_path, caplog):
    moved = tmp_path / "elsewhere" / "val.json"
    roots = {"a": tmp_path / "one", "b": tmp_path / "one", "c": tmp_path / "two"}
    for name, root in roots.items():
        write_run(tmp_path / name, [], data_config(root), {"ann_file": str(moved)})
    AnnotationsOnly.prepared.clear()
    cache: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="msr.studies.intervals"):
        found = [annotation_file(tmp_path / name, cache) for name in roots]
    # runs with the same data config, once resolved, share one preparation
    assert found == [str(root / "val.json") for root in roots.values()]
    assert AnnotationsOnly.prepared == [
        str(tmp_path / "one" / "val.json"),
        str(tmp_path / "two" / "val.json"),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / name}: recorded annotation file {moved} is not here; using the run's data config"
        for name in roots
    ]


def test_run_pictures_scores_a_moved_run_on_its_data_configs_annotations(tmp_path, synth, gt_file):
    results = [hit(synth, i, 0.5) for i in range(1, 11)]
    folder = write_run(
        tmp_path / "run", results, data_config(gt_file.parent), {"ann_file": str(tmp_path / "gone")}
    )
    pictures = run_pictures(folder, {})
    assert pictures.seed == 3 and len(pictures.by_mask_score.image_ids) == N


def test_read_trunk_names_the_head_only_jobs_trunk_and_the_trunks_own_run(tmp_path):
    head = tmp_path / "head"
    head.mkdir()
    (head / "run_config.json").write_text(json.dumps({"trunk": {"key": "k1", "checkpoint": "x.ckpt"}}))
    own = tmp_path / "cache" / "k2" / "run"
    own.mkdir(parents=True)
    (own / "run_config.json").write_text(json.dumps({"config": {}}))
    (own.parent / "trunk.json").write_text(json.dumps({"key": "k2"}))
    end_to_end = tmp_path / "end"
    end_to_end.mkdir()
    (end_to_end / "run_config.json").write_text(json.dumps({"config": {}}))
    bare = tmp_path / "bare"
    bare.mkdir()
    assert [read_trunk(f) for f in (head, own, end_to_end, bare)] == ["k1", "k2", None, None]
