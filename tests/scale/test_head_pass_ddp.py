"""A shared head pass under DDP with two gloo processes: from torchrun (they run the head-only sweep
together, the trunk trained by both, then both heads in one pass on both ranks) or started by Lightning
for a plain `trainer.devices=2` sweep (pinned to the pass, as for any job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scale_cli import DDP_CPU, TINY, run_cli
from test_ddp_multirun import free_port


@pytest.fixture(scope="module")
def trunks(tmp_path_factory):
    """The trunk cache of the DDP tests here: the torchrun test trains the trunk, the next one reuses it."""
    return tmp_path_factory.mktemp("trunks")


def test_torchrun_processes_train_the_trunk_and_the_shared_pass_together(tmp_path, cli_env, trunks):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "msr.cli.train",
        "--multirun",
        *TINY,
        *DDP_CPU,
        "schedule=cpu_quick",
        "schedule.max_epochs=1",
        "protocol=head_only",
        f"protocol.trunk_cache={trunks}",
        "head=maskiou,maskiou_multiply",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(command, cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # 8 pictures, 2 a step on each of 2 ranks: 2 steps an epoch, for the trunk and for the heads
    assert proc.stdout.count("val metrics after 2 steps") == 3  # the trunk's and the two jobs', rank 0 only
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    records = [json.loads((sweep / j / "run_config.json").read_text())["trunk"] for j in jobs]
    assert records[0] == records[1]
    trunk = torch.load(records[0]["checkpoint"], map_location="cpu", weights_only=True)
    assert trunk["global_step"] == 2
    assert trunk["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.001)
    segm = []
    for job in jobs:
        state = torch.load(sweep / job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert state["global_step"] == 2
        # the global batch is 2 processes x 2 images: base lr 0.004 per 16 images -> 0.001
        assert state["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.001)
        results = json.loads((sweep / job / "eval" / "segm_results.json").read_text())
        assert {r["image_id"] for r in results} == set(range(1, 6))  # every val picture once, from both ranks
        segm.append([(r["image_id"], r["segmentation"]["counts"], r["class_score"]) for r in results])
    assert segm[0] == segm[1]  # the same detections, scored by two heads


def test_processes_lightning_starts_run_the_pass_they_were_started_for(tmp_path, cli_env, trunks):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train",
        "--multirun",
        *TINY,
        *DDP_CPU,
        "schedule=cpu_quick",
        "schedule.max_epochs=1",
        "protocol=head_only",
        f"protocol.trunk_cache={trunks}",  # the torchrun test's trunk: both are 2-process DDP
        "head=maskiou,maskiou_concat_28",
        f"hydra.sweep.dir={sweep}",
        env=cli_env,
        cwd=tmp_path,
    )
    assert (
        proc.stdout.count("share one trunk and train in one pass") + proc.stderr.count("share one trunk") == 1
    )
    assert proc.stdout.count("val metrics after 2 steps") == 2  # the two jobs', rank 0 only
    first = sweep / "0"
    child = (first / "train_ddp_process_1.log").read_text()  # rank 1 ran the pass of both jobs, in job 0
    assert "2 heads in one pass" in child and "head=maskiou, head=maskiou_concat_28" in child
    spec = json.loads((first / ".ddp" / "head_pass.json").read_text())
    assert [Path(e["folder"]).name for e in spec] == ["0", "1"]
    for job in ("0", "1"):
        state = torch.load(sweep / job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert state["global_step"] == 2
        assert state["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.001)


def test_submitit_runs_a_pass_as_one_cluster_job(tmp_path, cli_env):
    """hydra/launcher=slurm's grouping, through submitit's local executor (no SLURM here): the two head-only
    jobs that share a trunk are one submitted job, which prepares both folders and trains both heads."""
    sweep = tmp_path / "sweep"
    run_cli(
        "train",
        "--multirun",
        *TINY,
        "schedule=cpu_quick",
        "schedule.max_epochs=1",
        "protocol=head_only",
        f"protocol.trunk_cache={tmp_path / 'trunks'}",
        "head=maskiou,maskiou_multiply",
        "hydra/launcher=submitit_local",
        "hydra.launcher._target_=hydra_plugins.msr_launcher.msr_launcher.MsrLocalLauncher",
        f"hydra.sweep.dir={sweep}",
        env=cli_env,
        cwd=tmp_path,
    )
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(submitted) == 1  # one cluster job for the pass (".submitit/%j" holds the submission)
    segm = []
    for job in ("0", "1"):
        assert (sweep / job / ".hydra" / "overrides.yaml").is_file()
        state = torch.load(sweep / job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert state["global_step"] == 4
        results = json.loads((sweep / job / "eval" / "segm_results.json").read_text())
        segm.append([(r["image_id"], r["segmentation"]["counts"], r["class_score"]) for r in results])
    assert segm[0] and segm[0] == segm[1]
