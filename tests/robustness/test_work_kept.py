"""No finished work is thrown away: a run that stops on an error keeps a resumable checkpoint of its
training, msr-predict writes the results of the pictures it did, unreadable pictures can be skipped (and
are named), and Ctrl-C ends a run with exit status 130 after its checkpoint is written (SIGTERM: exit status
143, tests/scale/test_preemption.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from batch_cases import predict_cases
from robust_cli import MODEL, TINY, custom_data, run_cli, tiny_coco, truncate
from support.cli_batch import run_case

CUSTOM_TRAIN = [*MODEL, "schedule=cpu_tiny"]  # 4 pictures, batch 2: 2 steps per epoch, 4 steps


def last_log_line(run) -> str:
    """Return the last line of the run's train.log."""
    return (run / "train.log").read_text().rstrip("\n").splitlines()[-1]


def test_crash_in_validation_keeps_the_training_and_resumes(tmp_path, cli_env):
    paths = tiny_coco(tmp_path / "data")
    picture = paths["images"] / "5.png"  # a val picture: its header reads, its pixels do not
    shutil.copy(picture, tmp_path / "5.png")
    truncate(picture)
    run = tmp_path / "run"
    args = [*CUSTOM_TRAIN, *custom_data(paths), f"hydra.run.dir={run}"]
    failed = run_cli("train", *args, env=cli_env, cwd=tmp_path, check=False)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith(f"msr-train: error: cannot read image file {picture}")
    assert "data.skip_unreadable=true" in line
    assert last_log_line(run).endswith(line)  # train.log ends with the error that stopped the run
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2  # the first epoch's training is kept

    shutil.copy(tmp_path / "5.png", picture)  # the picture fixed, the same command resumes
    resumed = run_cli("train", *args, "ckpt_path=auto", env=cli_env, cwd=tmp_path)
    assert "val metrics after 4 steps" in resumed.stdout
    assert json.loads((run / "eval" / "val_metrics.json").read_text())["global_step"] == 4
    rows = (run / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [r.split(",")[header.index("step")] for r in rows[1:] if r.split(",")[header.index("train/loss")]]
    assert steps == ["0", "1", "2", "3"]  # every step logged once, those before the crash included


def test_skip_unreadable_skips_pictures_that_fail_to_load(tmp_path, cli_env):
    paths = tiny_coco(tmp_path / "data")
    for name in ("2.png", "6.png"):  # a training and a val picture
        truncate(paths["images"] / name)
    run = tmp_path / "run"
    args = [*CUSTOM_TRAIN, *custom_data(paths), "data.skip_unreadable=true", "trainer.max_steps=2"]
    proc = run_cli("train", *args, f"hydra.run.dir={run}", env=cli_env, cwd=tmp_path)
    assert "val metrics after 2 steps" in proc.stdout
    log = (run / "train.log").read_text()
    for name in ("2.png", "6.png"):
        assert f"cannot read image file {paths['images'] / name}" in log and "skipped" in log
    segm = json.loads((run / "eval" / "segm_results.json").read_text())
    assert {r["image_id"] for r in segm} <= {5}  # the unreadable val picture is left out, not scored


@pytest.fixture(scope="module")
def predictions(tmp_path_factory, cli_env, checkpoint) -> tuple[Path, dict[str, dict]]:
    """Return (root, {case: {"rc", "stdout", "stderr"}}) of msr-predict stopping at a corrupt picture and
    skipping it (batch_cases.predict_cases), both run by msr-predict's entry point in this process."""
    root = tmp_path_factory.mktemp("predict")
    return root, {
        case["name"]: run_case("predict", case["argv"], cli_env) for case in predict_cases(root, checkpoint)
    }


def test_predict_stopped_by_a_corrupt_picture_keeps_the_results_before_it(predictions):
    root, results = predictions
    result = results["predict_corrupt"]
    assert result["rc"] == 2 and "Traceback" not in result["stderr"], result["stderr"][-3000:]
    line = [x for x in result["stderr"].splitlines() if x.startswith("msr-predict: error: ")][-1]
    assert "cannot read image file" in line and "c.png" in line and "data.skip_unreadable=true" in line
    out = root / "predict_corrupt"
    images = json.loads((out / "images.json").read_text())
    assert [i["file_name"] for i in images] == ["a.png", "b.png"]  # the batch before the corrupt picture
    for kind in ("bbox", "segm"):
        results = json.loads((out / f"{kind}_results.json").read_text())
        assert {r["image_id"] for r in results} <= {i["id"] for i in images}


def test_predict_skips_unreadable_pictures_and_names_them(predictions):
    root, results = predictions
    result = results["predict_skip"]
    assert result["rc"] == 0, result["stderr"][-3000:]
    assert "skipped 1 unreadable pictures: c.png" in result["stdout"]
    out = root / "predict_skip"
    images = json.loads((out / "images.json").read_text())
    assert [i["file_name"] for i in images] == ["a.png", "b.png", "d.png", "e.png"]
    skipped = json.loads((out / "skipped_images.json").read_text())
    assert [s["file_name"] for s in skipped] == ["c.png"] and "cannot read image file" in skipped[0]["reason"]
    segm = json.loads((out / "segm_results.json").read_text())
    assert {r["image_id"] for r in segm} <= {i["id"] for i in images}


def _signalled_run(tmp_path, cli_env, run, *signals: int, extra: tuple[str, ...] = ()):
    """Start a long tiny run in `run`, send `signals` once it has logged a training step (0.05 s apart);
    return the finished Popen and its stderr (text)."""
    overrides = [o for o in TINY if not o.startswith(("data.num_train", "data.num_workers"))] + [
        "data.num_train=40",
        "data.num_workers=1",  # a forked DataLoader worker, which a terminal's Ctrl-C reaches too
        "schedule=cpu_tiny",
    ]
    overrides += ["trainer.max_steps=200", "+logger.flush_logs_every_n_steps=1", f"hydra.run.dir={run}"]
    overrides += extra
    command = [sys.executable, "-m", "msr.cli.train", *overrides]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    metrics, deadline = run / "csv" / "metrics.csv", time.monotonic() + 300
    before = metrics.read_text().count("\n") if metrics.is_file() else 0  # a resumed run's earlier rows
    while proc.poll() is None and time.monotonic() < deadline:
        text = metrics.read_text() if metrics.is_file() else ""
        if text.count("\n") > before and "train/loss" in text:
            break
        time.sleep(0.1)
    for number, signum in enumerate(signals):
        time.sleep(0.05 if number else 0)
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    return proc, stderr.decode()


def test_ctrl_c_writes_the_checkpoint_and_a_second_one_stops_at_once(tmp_path, cli_env):
    run = tmp_path / "run"
    proc, stderr = _signalled_run(tmp_path, cli_env, run, signal.SIGINT)
    assert proc.returncode == 130, stderr[-3000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("msr-train: stopped by Ctrl-C (exit status 130)"), stderr[-3000:]
    assert f"ckpt_path=auto hydra.run.dir={run}" in line and last_log_line(run).endswith(line)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] >= 1 and saved["optimizer_states"][0]["state"]

    proc, stderr = _signalled_run(
        tmp_path, cli_env, run, signal.SIGINT, signal.SIGINT, extra=("ckpt_path=auto",)
    )
    assert proc.returncode == 130, stderr[-3000:]
    assert "second Ctrl-C: stopped at once" in last_log_line(run) and "Traceback" not in stderr
    again = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert again["global_step"] >= saved["global_step"]  # the earlier checkpoint, whole
