"""msr-train through Hydra: checkpoints, evaluation with the real Trainer, resume, clear errors."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest
import torch
from support.cli import TINY, run_batch, run_cli, train_case
from support.paths import require_balloon

LOSSES = (
    "loss_classifier",
    "loss_box_reg",
    "loss_mask",
    "loss_maskiou",
    "loss_objectness",
    "loss_rpn_box_reg",
)


def test_train_writes_checkpoints_metrics_and_table(trained_run):
    run = trained_run["run"]
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.partial"))
    metrics = trained_run["metrics"]
    assert metrics["global_step"] == 4 and metrics["split"] == "val"
    for key in (
        "bbox/AP",
        "segm/AP",
        "segm/AP50",
        "bbox/APl",
        "calib/pearson_class_score",
        "calib/num_matched",
    ):
        assert key in metrics, key
    # 5 val pictures evaluated with faster-coco-eval; results saved beside the metrics
    segm = json.loads((run / "eval" / "segm_results.json").read_text())
    assert {r["image_id"] for r in segm} <= set(range(1, 6)) and all("mask_iou" in r for r in segm)
    # the closing table
    assert re.search(r"^\| segm AP +\| [0-9.]+ +\|$", trained_run["stdout"], re.MULTILINE)
    assert "Pearson(true IoU, mask score)" in trained_run["stdout"]
    # every loss and the total logged
    with open(run / "csv" / "metrics.csv") as f:
        columns = next(csv.reader(f))
    for name in LOSSES:
        assert f"train/{name}" in columns
    assert "train/loss" in columns and "val/segm/AP" in columns and any(c.startswith("lr-") for c in columns)
    # the evaluation pictures are written with the CSV logger too (W&B not needed)
    figures = run / "figures" / "step_0000004"
    assert len(list((figures / "samples").glob("*.png"))) == 4
    assert (figures / "calibration.png").is_file() and (figures / "per_class_ap.csv").is_file()
    assert not (run / "wandb").exists()


def test_the_config_hydra_saved_resolves_to_the_config_that_ran(trained_run):
    from omegaconf import OmegaConf

    from msr.layout import RunLayout, register_resolvers, run_path_resolver

    run = trained_run["run"]
    saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    # ${msr.run:<name>} names a path in the job's own folder: here, the run's
    OmegaConf.register_new_resolver("msr.run", lambda name: str(RunLayout(run).path(name)), replace=True)
    try:
        resolved = OmegaConf.to_container(saved, resolve=True)
    finally:
        OmegaConf.register_new_resolver("msr.run", run_path_resolver, replace=True)
        register_resolvers()
    ran = json.loads((run / "run_config.json").read_text())["config"]
    assert resolved == ran
    assert ran["callbacks"]["last_checkpoint"]["dirpath"] == str(run / "checkpoints")  # this folder
    assert ran["model"]["num_classes"] == "???"  # taken from the data at run time, never written back


def test_checkpoint_rebuilds_the_model_without_config(trained_run):
    from msr.training.checkpoints import load_module

    module = load_module(trained_run["run"] / "checkpoints" / "last.ckpt")
    assert (
        module.class_names[0] == "__background__"
        and len(module.class_names) == module.net.roi_heads.box_predictor.cls_score.out_features
    )
    assert module.net.roi_heads.maskiou_head is not None


def test_resume_continues_global_step_and_optimizer(trained_run, cli_env, tmp_path):
    run = tmp_path / "run"  # a copy: the shared run stays as trained (test_eval_predict.py evaluates it)
    shutil.copytree(trained_run["run"], run)
    before = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert before["global_step"] == 4
    overrides = [*TINY, "schedule=cpu_tiny", "trainer.max_steps=6", "ckpt_path=last", f"hydra.run.dir={run}"]
    proc = run_cli("train", *overrides, env=cli_env, cwd=tmp_path)
    assert "after 6 steps" in proc.stdout
    after = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["global_step"] == 6
    assert after["lr_schedulers"][0]["last_epoch"] == 6  # the per-step schedule went on, not restarted
    state = after["optimizer_states"][0]["state"]
    assert state and all(float(s["step"]) == 6 for s in state.values())  # AdamW's moments went on
    metrics = json.loads((run / "eval" / "val_metrics.json").read_text())
    assert metrics["global_step"] == 6


@pytest.fixture(scope="module")
def failures(tmp_path_factory, cli_env) -> dict[str, dict]:
    """Return {case: {"rc", "stdout", "stderr", "run"}} of msr-train runs that must fail before any work,
    all run by the real entry point in one process, each with its own run folder."""
    root = tmp_path_factory.mktemp("failures")
    overrides = {
        "misspelt": ["data.num_trian=3"],
        "mandatory": ["data=coco"],
        "missing path": ["data=coco", f"data.root={root / 'no_coco_here'}"],
        "balloon alone": ["data=balloon", f"data.root={root / 'no_balloon_here'}"],
        "no validation": [*TINY, "schedule=cpu_tiny", "schedule.max_steps=2", "final_eval=false"],
    }
    runs = {name: root / name.replace(" ", "_") for name in overrides}
    cases = [train_case(name, *argv, f"hydra.run.dir={runs[name]}") for name, argv in overrides.items()]
    results = run_batch(cases, cli_env, root)
    return {name: {**result, "run": runs[name], "root": root} for name, result in results.items()}


def test_misspelt_override_fails_before_any_work(failures):
    case = failures["misspelt"]
    assert case["rc"] == 2
    assert case["stderr"] == (
        "msr-train: error: unknown key data.num_trian (did you mean data.num_train?): no part of msr-train "
        "reads it (`msr-train --cfg job` prints every key)\n"
    )
    assert not (case["run"] / "checkpoints").exists()


def test_a_run_without_validation_says_where_its_outputs_are_without_false_alarms(failures):
    case = failures["no validation"]
    assert case["rc"] == 0, case["stderr"][-3000:]
    lines = [line for line in case["stdout"].splitlines() if line.strip()]
    assert lines[0] == f"msr-train: run folder {case['run']}"
    assert lines[-1].startswith(f"msr-train: done; outputs in {case['run']}: checkpoints/last.ckpt, ")
    assert "train.log" in lines[-1] and lines[-1] in (case["run"] / "train.log").read_text()
    output = case["stdout"] + case["stderr"]
    assert "monitored key" not in output and "💡" not in output
    assert not (case["run"] / "checkpoints" / "best.ckpt").exists()


def test_balloon_without_a_recipe_points_to_the_cpu_recipe(failures):
    case = failures["balloon alone"]
    assert case["rc"] == 2  # the folder does not exist: the hint comes before that error
    hints = [line for line in case["stdout"].splitlines() if "without an experiment" in line]
    assert len(hints) == 1 and "COCO-sized model (800 px" in hints[0]
    assert "on a CPU use experiment=balloon_cpu_study" in hints[0]


def test_help_pages_list_public_choices_examples_and_output(tmp_path, cli_env):
    cases = [
        {"name": name, "program": program, "argv": ["--help"]}
        for name, program in (("msr-train", "train"), ("msr-eval", "evaluate"), ("msr-predict", "predict"))
    ]
    pages = run_batch(cases, cli_env, tmp_path)
    for name, page in pages.items():
        text = page["stdout"]
        assert page["rc"] == 0 and text.startswith(f"{name}: ") and "powered by Hydra" not in text
        assert "_loader" not in text and "_resnet_fpn" not in text  # no private configs
        assert text.count(f"\n  {name} ") == 3 and "Output: outputs/" in text and "README.md" in text
        assert max(len(line) for line in text.splitlines()) <= 100
    train = pages["msr-train"]["stdout"]
    assert "data: balloon, coco, custom, synthetic\n" in train and "callbacks: default\n" in train
    assert "data: balloon, checkpoint, coco, custom, synthetic\n" in pages["msr-eval"]["stdout"]


def test_missing_mandatory_value_names_the_key(failures):
    case = failures["mandatory"]
    assert case["rc"] == 2
    lines = case["stderr"].splitlines()  # one line naming the key and how to give it
    assert len(lines) == 1 and lines[0].startswith("msr-train: error: missing values: data.root;"), lines
    assert "data.root=" in lines[0]
    assert not (case["run"] / "checkpoints").exists()


def test_missing_data_path_is_one_clear_line(failures):
    case = failures["missing path"]
    assert case["rc"] == 2
    missing = case["root"] / "no_coco_here"
    assert f"msr-train: error: COCO 2017 layout incomplete under {missing}" in case["stderr"]
    assert "Traceback" not in case["stderr"]


def test_balloon_study_recipe_trains_through_the_same_datamodule(tmp_path, cli_env):
    balloon = require_balloon()
    run = tmp_path / "run"
    overrides = [
        "experiment=balloon_cpu_study",  # its pictures smaller and its batch 2 here, to stay quick
        f"data.root={balloon}",
        "data.num_workers=0",
        "data.batch_size=2",
        "model.min_size=128",
        "model.max_size=192",
        f"data.cache_dir={tmp_path / 'cache'}",
        "schedule=cpu_tiny",
        "trainer.max_steps=2",
        "logger=none",
        "model.box_detections_per_img=10",
        f"hydra.run.dir={run}",
    ]
    proc = run_cli("train", *overrides, env=cli_env, cwd=tmp_path)
    metrics = json.loads((run / "eval" / "val_metrics.json").read_text())
    assert metrics["global_step"] == 2 and "segm/AP-balloon" in metrics
    assert "segm_upper_bound/AP" in metrics  # the study recipe evaluates the upper bound
    assert "balloon_cpu_study: val metrics after 2 steps" in proc.stdout
