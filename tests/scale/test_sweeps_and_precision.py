"""Sweeper and launcher presets compose; a 2-trial Optuna sweep runs; bf16-mixed trains on CPU."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from scale_cli import TINY_STEPS, run_batch, run_cli, succeeded, train_case


@pytest.fixture(scope="module")
def presets(tmp_path_factory, cli_env) -> dict[str, dict]:
    """Return what msr-train prints with `--cfg hydra` for the SLURM launcher and the Optuna sweeper
    presets with overrides, both composed by the real entry point in one process."""
    slurm = ["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4"]
    slurm += ["hydra.launcher.partition=gpu", "trainer=ddp", "trainer.num_nodes=2"]
    optuna = ["hparams_search=maskiou_optuna", "hydra.sweeper.n_trials=7"]
    cases = [train_case("slurm", "--cfg", "hydra", *slurm), train_case("optuna", "--cfg", "hydra", *optuna)]
    return run_batch(cases, cli_env, tmp_path_factory.mktemp("presets"))


def test_submitit_slurm_preset_composes_with_overrides(presets):
    launcher = OmegaConf.create(yaml.safe_load(succeeded(presets, "slurm"))["hydra"]["launcher"])
    # msr's SLURM launcher: submitit's, with the head-only jobs that share a trunk as one cluster job
    assert launcher["_target_"] == "hydra_plugins.msr_launcher.msr_launcher.MsrSlurmLauncher"
    from hydra_plugins.msr_launcher.msr_launcher import MsrSlurmLauncher

    # by name: Hydra's plugin scan executes plugin modules again, so class objects differ between scans
    bases = {f"{base.__module__}.{base.__qualname__}" for base in MsrSlurmLauncher.__mro__}
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in bases
    assert launcher.nodes == 2 and launcher.gpus_per_node == 4 and launcher.tasks_per_node == 4  # 1 per GPU
    assert launcher["partition"] == "gpu" and launcher["max_num_timeout"] > 0


def test_optuna_preset_composes(presets):
    sweeper = yaml.safe_load(succeeded(presets, "optuna"))["hydra"]["sweeper"]
    assert sweeper["_target_"].endswith("OptunaSweeper") and sweeper["direction"] == "maximize"
    assert sweeper["n_trials"] == 7 and "optimizer.lr" in sweeper["params"]


def test_two_trial_optuna_sweep_runs_and_reports_the_best_segm_ap(tmp_path, cli_env):
    sweep = tmp_path / "optuna"
    run_cli(
        "train", "hparams_search=maskiou_optuna", "hydra.sweeper.n_trials=2", *TINY_STEPS,
        f"hydra.sweep.dir={sweep}", env=cli_env, cwd=tmp_path,
    )
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {
        "optimizer.lr",
        "model.maskiou_loss.loss_weight",
        "model.maskiou_loss.threshold",
    }
    trials = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(trials) == 2
    aps = []
    for trial in trials:
        config = yaml.safe_load((trial / ".hydra" / "config.yaml").read_text())
        assert 0.001 <= config["optimizer"]["lr"] <= 0.01
        metrics = yaml.safe_load((trial / "eval" / "val_metrics.json").read_text())
        aps.append(metrics["segm/AP"])
    assert result["best_value"] == pytest.approx(max(aps))  # the value msr-train returned to Optuna


def test_bf16_mixed_precision_trains_on_cpu(tmp_path, cli_env):
    run = tmp_path / "bf16"
    run_cli(
        "train", *TINY_STEPS, "trainer.precision=bf16-mixed", "trainer.max_steps=2", f"hydra.run.dir={run}",
        env=cli_env, cwd=tmp_path,
    )
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    lines = (run / "csv" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    losses = [
        float(row.split(",")[header.index("train/loss")])
        for row in lines[1:]
        if row.split(",")[header.index("train/loss")]
    ]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
