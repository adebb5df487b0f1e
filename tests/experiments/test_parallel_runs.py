"""experiments/parallel_runs.py: a study's jobs side by side, one folder that msr-aggregate reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from parallel_runs import job_name, last_rate
from support.cli import TINY
from support.env import subprocess_env
from support.paths import ROOT


def test_job_names_are_hydra_safe_folder_names():
    assert job_name("head=maskiou", 2) == "head-maskiou_seed2"
    assert job_name("head=maskiou model.maskiou_loss.threshold=0.5", 0) == (
        "head-maskiou_model.maskiou_loss.threshold-0.5_seed0"
    )


def test_last_rate_reads_the_progress_bar_in_either_unit():
    bar = "Epoch 0:  40%|████  | 100/250 [00:10<00:15, 9.85it/s]\rEpoch 0:  41%| 101/250 [00:11, 2.50s/it]"
    assert last_rate(bar) == pytest.approx(0.4)
    assert last_rate("Epoch 0: 100%| 250/250 [00:18<00:00, 13.80it/s, train/loss=0.261]") == 13.8
    assert last_rate("no bar here") is None


def test_two_jobs_side_by_side_leave_a_folder_msr_aggregate_reads(tmp_path):
    from msr.studies.aggregate import aggregate

    out = tmp_path / "study"
    shared = [o for o in TINY if not o.startswith("experiment=")]
    script = [sys.executable, str(ROOT / "experiments" / "parallel_runs.py"), "--out", str(out)]
    jobs = ["--variants", "head=maskiou", "head=none", "--seeds", "0"]
    command = [*script, *jobs, "--", "experiment=synthetic_converged", *shared, "schedule.max_steps=2"]
    env = subprocess_env(tmp_path / "cache")
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    plan = json.loads((out / "plan.json").read_text())
    assert sorted(plan["runs"]) == ["head-maskiou_seed0", "head-none_seed0"]
    assert all(job["exit"] == 0 and job["steps_per_s"] for job in plan["runs"].values())
    config = json.loads((out / "head-none_seed0" / "run_config.json").read_text())["config"]
    assert config["name"] == "synthetic_converged" and config["evaluation"]["upper_bound"] is True
    md, _ = aggregate([out], tmp_path / "table", reference="head=none", replicates=0)
    text = md.read_text()
    assert "`head=maskiou`" in text and "`head=none`" in text
