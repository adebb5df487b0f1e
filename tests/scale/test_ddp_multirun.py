"""DDP under Hydra: a multirun whose jobs each train with 2 CPU processes (gloo), through the real CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch
from scale_cli import DDP_CPU, TINY_STEPS, run_cli


def test_multirun_of_ddp_jobs_gives_each_job_its_own_complete_folder(tmp_path, cli_env):
    sweep = tmp_path / "multirun"
    proc = run_cli(
        "train", "--multirun", *TINY_STEPS, *DDP_CPU, "seed=0,1", f"hydra.sweep.dir={sweep}",
        env=cli_env, cwd=tmp_path,
    )
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]  # the children did not start sweeps of their own
    assert proc.stdout.count("val metrics after 4 steps") == 2  # one table per job, from rank 0 only
    for seed, job in enumerate(sweep / j for j in jobs):
        ckpt = torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["global_step"] == 4
        # the global batch is 2 processes x 2 images: base lr 0.004 per 16 images -> 0.001
        assert ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.001)
        metrics = json.loads((job / "eval" / "val_metrics.json").read_text())
        assert metrics["global_step"] == 4
        segm = json.loads((job / "eval" / "segm_results.json").read_text())
        assert {r["image_id"] for r in segm} <= set(range(1, 6))
        config = json.loads((job / "run_config.json").read_text())
        assert config["config"]["seed"] == seed and config["config"]["trainer"]["devices"] == 2
        assert (job / ".hydra" / "config.yaml").is_file() and (job / "checkpoints" / "best.ckpt").is_file()
        assert list((job / "figures").glob("step_0000004/calibration.png"))
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 ran inside this job's folder
    assert not (tmp_path / "outputs").exists()  # no child wrote to Hydra's single-run folder


def free_port() -> int:
    """Return a TCP port that is free on localhost now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_processes_from_torchrun_are_used_as_they_are(tmp_path, cli_env):
    run = tmp_path / "torchrun"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
    ]
    command = [*torchrun, "-m", "msr.cli.train", *TINY_STEPS, *DDP_CPU, "trainer.max_steps=2"]
    proc = subprocess.run(
        [*command, f"hydra.run.dir={run}"],
        cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("val metrics after 2 steps") == 1  # printed by rank 0 only
    assert not (run / ".ddp").exists()  # nothing was pinned: torchrun made the processes
    assert not list(run.glob("train_ddp_process_*.log"))  # and Lightning launched none
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.001)
