"""Preemption: SIGTERM mid-epoch writes a checkpoint and ends the run with exit status 143 and one line that
says how to resume; ckpt_path=auto resumes from it (real CLI and signal)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import torch
from scale_cli import TINY, run_cli

#: 40 training pictures at batch 2: 20 steps per epoch, far more steps than the test lets run.
LONG = [o for o in TINY if not o.startswith(("data.num_train", "logger="))] + [
    "data.num_train=40",
    "schedule=cpu_tiny",
    "logger=csv",
    "+logger.flush_logs_every_n_steps=1",
]


def logged_steps(run) -> int:
    """Return how many training steps the CSV log holds so far."""
    path = run / "csv" / "metrics.csv"
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines()[1:] if line.strip())


def test_sigterm_mid_epoch_checkpoints_and_auto_resume_continues(tmp_path, cli_env):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "msr.cli.train", *LONG, "trainer.max_steps=200", f"hydra.run.dir={run}"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while logged_steps(run) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    output = stdout.decode() + stderr.decode()  # Hydra's job logging goes to stdout
    assert "SIGTERM at global step" in output, output[-3000:]
    assert proc.returncode == 143, output[-3000:]
    line = stderr.decode().strip().splitlines()[-1]  # what stopped the run, and how to go on
    assert line.startswith("msr-train: stopped by SIGTERM (exit status 143)"), output[-3000:]
    assert f"ckpt_path=auto hydra.run.dir={run}" in line and "Traceback" not in output
    assert (run / "train.log").read_text().rstrip("\n").splitlines()[-1].endswith(line)

    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    stopped_at = saved["global_step"]
    assert 1 <= stopped_at < 20  # mid-epoch: the first epoch has 20 steps
    assert saved["epoch"] == 0 and saved["optimizer_states"][0]["state"]

    resumed = run_cli(
        "train", *LONG, f"trainer.max_steps={stopped_at + 2}", "ckpt_path=auto", f"hydra.run.dir={run}",
        env=cli_env, cwd=tmp_path,
    )
    assert f"after {stopped_at + 2} steps" in resumed.stdout
    assert f"ckpt_path=auto: resuming from {run / 'checkpoints' / 'last.ckpt'}" in resumed.stdout  # Hydra log
    after = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["global_step"] == stopped_at + 2
    assert after["lr_schedulers"][0]["last_epoch"] == stopped_at + 2  # the schedule went on


def test_auto_without_checkpoint_starts_fresh(tmp_path, cli_env):
    run = tmp_path / "fresh"
    proc = run_cli(
        "train", *LONG, "trainer.max_steps=1", "final_eval=false", "ckpt_path=auto", f"hydra.run.dir={run}",
        env=cli_env, cwd=tmp_path,
    )
    assert proc.returncode == 0 and "resuming from" not in proc.stdout + proc.stderr
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
