"""The ablation recipes compose as multiruns, and one (shrunk to one seed, tiny data) runs and aggregates."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.cli import TINY, run_batch, run_cli, succeeded, train_case
from support.env import subprocess_env

STUDIES = {
    "mask_scoring": {"head": "maskiou,none"},
    "input_designs": {"head": "maskiou,maskiou_multiply,maskiou_all_masks,maskiou_concat_28"},
    "training_targets": {"maskiou_target": "target_class,all_classes,present_classes"},
    "threshold": {"model.maskiou_loss.threshold": "0.0,0.25,0.5,0.75"},
    "backbones": {"backbone": "resnet18,resnet34,resnet50", "head": "maskiou,none"},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Return the subprocess environment with this file's own data cache."""
    return subprocess_env(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def composed(env, tmp_path_factory) -> dict[str, dict]:
    """Return what msr-train prints with `--cfg` for every study's Hydra config and for the jobs of the
    threshold study and of the default, all composed by the real entry point in one process."""
    recipe = "experiment=synthetic_ablation"
    cases = [train_case(f"hydra {s}", "--cfg", "hydra", f"study={s}", recipe) for s in STUDIES]
    cases.append(train_case("job threshold", "--cfg", "job", "study=threshold", recipe))
    cases.append(train_case("job default", "--cfg", "job", recipe))
    return run_batch(cases, env, tmp_path_factory.mktemp("composed"))


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_study_sweeps_its_variable_over_three_seeds(study, composed):
    hydra = yaml.safe_load(succeeded(composed, f"hydra {study}"))["hydra"]
    assert hydra["mode"] == "MULTIRUN"
    assert hydra["sweeper"]["params"] == {**STUDIES[study], "seed": "0,1,2"}


def test_threshold_study_stops_the_maskiou_gradient_for_every_tau_and_the_default_does_not(composed):
    assert yaml.safe_load(succeeded(composed, "job threshold"))["model"]["maskiou_detach"] is True
    default = yaml.safe_load(succeeded(composed, "job default"))["model"]
    assert default["maskiou_detach"] is False and default["maskiou_loss"]["threshold"] == 0.0
    assert default["maskiou_loss"]["normalizer"] == "kept"


def test_mask_scoring_study_runs_and_aggregates_with_the_upper_bound(env, tmp_path, monkeypatch):
    from msr.errors import EvaluationError
    from msr.evaluation.metrics import RESCORING_GAIN, TITLES
    from msr.studies.aggregate import aggregate

    sweep = tmp_path / "study"
    run_cli(
        "train", "study=mask_scoring", "hydra.sweeper.params.seed=0", *TINY, "schedule=cpu_tiny",
        f"hydra.sweep.dir={sweep}", env=env, cwd=tmp_path,
    )
    md, table = aggregate([sweep], tmp_path / "mask_scoring", reference="head=none", replicates=200)
    with table.open() as f:
        rows = {row["variant"].split("head=")[1].split()[0]: row for row in csv.DictReader(f)}
    assert set(rows) == {"maskiou", "none"} and all(r["seeds"] == "1" for r in rows.values())
    upper = f"{TITLES['segm_upper_bound/AP']} mean"
    mask_pearson = f"{TITLES['calib/pearson_mask_score']} mean"
    gain, class_only = f"{TITLES[RESCORING_GAIN]} mean", f"{TITLES['segm_class_score/AP']} mean"
    assert upper in rows["none"]  # the study turns the upper bound on
    assert rows["none"][mask_pearson] == "nan"  # Mask R-CNN has no predicted IoU
    # MS R-CNN's masks are also ranked by the class score alone; the gain column is their difference
    ms = {k: float(v) for k, v in rows["maskiou"].items() if k.endswith("mean")}
    assert ms[gain] == pytest.approx(ms["segm AP mean"] - ms[class_only])
    assert rows["none"][class_only] == "nan"

    # paired bootstrap over the 5 val pictures: MS R-CNN against the Mask R-CNN reference, seed 0 paired
    delta = [float(rows["maskiou"][f"delta segm AP vs reference{s}"]) for s in ("", " low", " high")]
    assert delta[0] == pytest.approx(ms["segm AP mean"] - float(rows["none"]["segm AP mean"]), abs=1e-9)
    assert delta[1] <= delta[0] <= delta[2] and rows["maskiou"]["paired seeds"] == "1"
    gain_ci = [float(rows["maskiou"][f"rescoring gain{s}"]) for s in ("", " low", " high")]
    assert gain_ci[0] == pytest.approx(ms[gain], abs=1e-9) and gain_ci[1] <= gain_ci[0] <= gain_ci[2]
    assert rows["none"]["rescoring gain"] == "nan" and rows["none"]["shared trunk"] == "False"
    assert "with the reference, `head=none`" in md.read_text() and "Δ segm AP vs reference" in md.read_text()

    # rescoring the saved results reproduces the run's own metrics (the script checks segm AP itself)
    script = Path(__file__).resolve().parents[2] / "experiments" / "rescore_runs.py"
    proc = subprocess.run([sys.executable, str(script), str(sweep)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("upper bound") == 2
    for job in sweep.glob("[0-9]*"):
        own = json.loads((job / "eval" / "val_metrics.json").read_text())
        scored = json.loads((job / "eval" / "scored_metrics.json").read_text())
        for key in ("segm/AP", "segm_upper_bound/AP", "segm_class_score/AP", "calib/pearson_class_score"):
            if key in own:
                assert scored[key] == pytest.approx(own[key], abs=1e-12, nan_ok=True), key

    # runs trained on another machine (a GPU machine) recorded that machine's annotation path: the
    # intervals fall back to the runs' data config (the same synthetic set here) and come out the same
    for job in sweep.glob("[0-9]*"):
        metrics_file = job / "eval" / "val_metrics.json"
        moved = {**json.loads(metrics_file.read_text()), "ann_file": "/elsewhere/instances_val.json"}
        metrics_file.write_text(json.dumps(moved))
    monkeypatch.setenv("MSR_CACHE_DIR", env["MSR_CACHE_DIR"])
    _, moved_table = aggregate([sweep], tmp_path / "moved", reference="head=none", replicates=200)
    with moved_table.open() as f:
        moved_rows = {row["variant"].split("head=")[1].split()[0]: row for row in csv.DictReader(f)}
    for column in ("delta segm AP vs reference", "delta segm AP vs reference low", "rescoring gain high"):
        assert moved_rows["maskiou"][column] == rows["maskiou"][column], column
    # annotations other than those a run was scored on are refused, not silently resampled
    job = next(sweep.glob("[0-9]*"))
    metrics_file = job / "eval" / "val_metrics.json"
    metrics_file.write_text(json.dumps({**json.loads(metrics_file.read_text()), "segm/AP": 0.123456}))
    with pytest.raises(EvaluationError, match=r"the run recorded 0\.123456: these are not the annotations"):
        aggregate([sweep], tmp_path / "mismatch", reference="head=none", replicates=200)
