"""The metric-key registry: what is logged, titles, and the Markdown tables built from it."""

from __future__ import annotations

import math

import pytest

from msr.evaluation.metrics import (
    AP_STATS,
    COCO_STATS,
    RESCORING_GAIN,
    STUDY_KEYS,
    SUMMARY_KEYS,
    TITLES,
    is_logged,
    logged_metrics,
    title,
)
from msr.evaluation.tables import markdown_table, metrics_table


def test_coco_stats_and_their_ap_subset():
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    assert list(COCO_STATS) == names
    assert list(AP_STATS) == names[:6]


@pytest.mark.parametrize(
    ("key", "logged"),
    [
        ("bbox/AP", True),
        ("segm/APl", True),
        ("segm/AP75", True),
        ("segm/AR100", False),  # recall is not logged
        ("bbox/ARs", False),
        ("segm/AP-person", False),  # nor per-class APs
        ("calib/pearson_mask_score", True),
        ("calib/num_matched", True),
        ("segm_upper_bound/AP", True),
        ("segm_upper_bound/AP50", True),  # prefix rule, as the LightningModule has always logged
        ("segm_upper_bound/AR1", False),
        ("segm_class_score/APs", True),
        ("segm_class_score/AR10", False),
        (RESCORING_GAIN, True),  # since it carries a bootstrap interval
        (f"{RESCORING_GAIN}_low", True),
        ("keypoints/AP", False),
    ],
)
def test_is_logged(key, logged):
    assert is_logged(key) is logged


def test_logged_metrics_keeps_finite_numbers_of_logged_keys():
    metrics = {
        "bbox/AP": 0.5,
        "segm/AP": -1.0,  # COCO's "no ground truth" is a number: logged
        "segm/AR100": 0.7,
        "calib/pearson_class_score": float("nan"),
        "calib/mae_pred_iou": math.inf,
        "calib/num_matched": 651,
        "segm_upper_bound/AP": 0.4,
        "segm_class_score/AP": None,
        "calib/note": "text",
    }
    assert logged_metrics(metrics) == {
        "bbox/AP": 0.5,
        "segm/AP": -1.0,
        "calib/num_matched": 651.0,
        "segm_upper_bound/AP": 0.4,
    }
    assert isinstance(logged_metrics(metrics)["calib/num_matched"], float)
    assert logged_metrics({"bbox/AP": 0.5}, prefix="val/") == {"val/bbox/AP": 0.5}


def test_every_table_key_has_one_title():
    assert set(SUMMARY_KEYS) <= TITLES.keys() and set(STUDY_KEYS) <= TITLES.keys()
    assert TITLES["segm/AP"] == "segm AP" and TITLES["bbox/AP"] == "bbox AP"
    assert TITLES["segm/AP75"] == "segm AP75"
    assert TITLES["calib/pearson_mask_score"] == "Pearson(true IoU, mask score)"
    assert TITLES["segm_class_score/AP"] == "segm AP, class score only"
    assert TITLES[RESCORING_GAIN] == "rescoring gain (segm AP)"
    assert len(set(TITLES.values())) == len(TITLES)  # no two keys share a title
    assert title("segm/AP-person") == "segm/AP-person"


def test_metrics_table_rows_and_number_format():
    metrics = {
        "segm/AP": 0.123456,
        "bbox/AP": 1.0,
        "calib/num_matched": 651.0,
        "calib/pearson_mask_score": float("nan"),
        "segm_upper_bound/AP": None,  # skipped, as are absent keys
        "segm/AR100": 0.5,  # not a summary row
    }
    text = metrics_table(metrics, "run: val metrics")
    lines = text.splitlines()
    assert lines[0] == "" and lines[1] == "run: val metrics"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert rows[0] == ["metric", "value"] and set(rows[1][0]) <= set("-:")
    assert rows[2:] == [
        ["bbox AP", "1.0"],
        ["segm AP", "0.1235"],
        ["Pearson(true IoU, mask score)", "nan"],
        ["matched detections", "651.0"],
    ]


def test_markdown_table_keeps_cells_as_given():
    text = markdown_table(["variant", "seeds"], [["`a`", 3], ["`b`", "1.50"]])
    assert text.splitlines()[0].split("|")[1].strip() == "variant"
    assert "| `b`       | 1.50    |" in text  # strings stay strings: no number parsing
