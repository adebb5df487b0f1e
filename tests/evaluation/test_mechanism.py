"""Diagnostics of the rescoring's mechanism: oracle rankings, partial correlation and AUC on known cases."""

from __future__ import annotations

import numpy as np
import pytest

from msr.errors import EvaluationError
from msr.evaluation.mechanism import auc, mechanism, partial_correlation

H = W = 20
N = 30


def test_auc_is_the_share_of_correctly_ordered_pairs_ties_half():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_partial_correlation_is_the_correlation_of_residuals():
    rng = np.random.default_rng(0)
    z = rng.normal(size=500)
    x, y = z + rng.normal(size=500), 2 * z + rng.normal(size=500) + 0.5 * rng.normal(size=500)
    residual_x = x - np.polyval(np.polyfit(z, x, 1), z)
    residual_y = y - np.polyval(np.polyfit(z, y, 1), z)
    expected = np.corrcoef(residual_x, residual_y)[0, 1]
    assert partial_correlation(x, y, z) == pytest.approx(expected, abs=1e-10)


def case(synth, predicted_is_true: bool):
    """Return (gt, results): N pictures, one square each; per picture a good mask (IoU 1 or 0.64), a poor
    one (IoU 0.36, unmatched) and a false positive touching nothing, with class scores that do not follow
    quality; predicted IoU = the true IoU, or constant."""
    rng = np.random.default_rng(1)
    images, anns, results = [], [], []
    for i in range(N):
        images.append({"id": i + 1, "height": H, "width": W, "file_name": f"{i}.png"})
        anns.append(synth.annotation(i + 1, i + 1, 3, H, W, (0, 0, 10, 10)))
        good = (0, 0, 10, 10) if i % 2 else (0, 0, 8, 8)  # IoU 1 or 64/100
        masks = [(good, 1.0 if i % 2 else 0.64), ((0, 0, 6, 6), 0.36), ((14, 14, 20, 20), 0.0)]
        for box, true_iou in masks:
            class_score = float(rng.uniform(0.5, 1.0))
            predicted = true_iou if predicted_is_true else 0.7
            mask = synth.rle_of(synth.rect_mask(H, W, *box))
            results.append({
                "image_id": i + 1, "category_id": 3, "segmentation": mask,
                "class_score": class_score, "mask_iou": predicted, "score": class_score * predicted,
            })
    gt = {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "cat"}]}
    return gt, results


def test_a_perfect_head_reaches_every_oracle_and_separates_matched_detections(synth):
    gt, results = case(synth, predicted_is_true=True)
    found = mechanism(results, gt)
    assert found["detections"] == 3 * N and found["matched (true IoU >= 0.5)"] == N
    assert found["touching no ground truth (true IoU = 0)"] == N
    assert found["AP mask score"] == pytest.approx(found["AP oracle: class x true IoU"], abs=1e-12)
    assert found["AP oracle: class x true IoU degraded to the head's Pearson"] == pytest.approx(
        found["AP oracle: class x true IoU"], abs=1e-12)  # Pearson 1: no noise
    assert found["Pearson(predicted, true IoU) over matched"] == pytest.approx(1.0)
    assert found["partial r(predicted, true IoU | class score) over matched"] == pytest.approx(1.0)
    assert found["AUC matched vs unmatched: predicted IoU"] == 1.0
    assert found["AUC matched vs unmatched: class score"] < 0.9
    # demoting every unmatched detection gains more than demoting those that touch nothing
    assert found["AP class score"] < found["AP oracle: class x [true IoU > 0]"]
    assert found["AP oracle: class x [true IoU > 0]"] < found["AP oracle: class x [true IoU >= 0.5]"]
    assert found["AP oracle: class x true IoU on matched only"] >= found["AP class score"]


def test_a_constant_prediction_ranks_as_the_class_score(synth):
    gt, results = case(synth, predicted_is_true=False)
    found = mechanism(results, gt)
    assert found["AP mask score"] == pytest.approx(found["AP class score"], abs=1e-12)
    assert found["AUC matched vs unmatched: predicted IoU"] == 0.5
    assert np.isnan(found["Pearson(predicted, true IoU) over matched"])
    no_head = [{k: v for k, v in r.items() if k != "mask_iou"} for r in results]
    with pytest.raises(EvaluationError, match="without a predicted IoU"):
        mechanism(no_head, gt)


def test_the_script_writes_every_runs_figures_from_its_saved_results(synth, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    gt, results = case(synth, predicted_is_true=True)
    ann_file = tmp_path / "val.json"
    ann_file.write_text(json.dumps(gt))
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / "eval").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["head=maskiou", "seed=3"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 3}))
    (job / "eval" / "segm_results.json").write_text(json.dumps(results))
    (job / "eval" / "val_metrics.json").write_text(json.dumps({"ann_file": str(ann_file)}))
    script = Path(__file__).resolve().parents[2] / "experiments" / "mechanism.py"
    out = tmp_path / "mechanism"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "sweep"), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(out.with_suffix(".json").read_text())
    assert record["seed"] == 3 and record == {**mechanism(results, gt), "folder": str(job), "seed": 3}
    assert "1 runs" in proc.stdout and "| AUC matched vs unmatched: predicted IoU | 1.0000 |" in " ".join(
        out.with_suffix(".md").read_text().split())
