"""Fault injection: a training run killed with SIGKILL at five points, each time restarted with the same
command and `ckpt_path=auto`, ends exactly as the uninterrupted run does: the same steps and epochs, the
same learning-rate schedule, the same weights and optimizer moments bit for bit (the checkpoints carry the
random generators' states), every metric logged once, no checkpoint damaged and no temporary file left.

The run is issue 15's case: `schedule.max_steps` set while `max_epochs` ends training (2 epochs of 2
steps, robust_cli.EPOCHS_RUN; conftest.uninterrupted is the same run without interruption). The kill
points cover every phase: in the middle of a checkpoint write (support.slow_checkpoints
holds each write between its temporary file and the rename), right after an epoch-end checkpoint, in the
middle of an epoch, in validation, and in the write of the last checkpoint, when the previous one must
still be whole.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from robust_cli import EPOCHS_RUN
from support.slow_checkpoints import SLOW_CHECKPOINTS


def temporaries(run: Path, name: str) -> list[Path]:
    """Return the temporary files of atomic writes of checkpoints/<name>."""
    return list((run / "checkpoints").glob(f".{name}.*.tmp"))


def metrics_text(run: Path) -> str:
    """Return the run's metrics.csv (flushed every step), or "" before it exists."""
    path = run / "csv" / "metrics.csv"
    return path.read_text() if path.is_file() else ""


def logged(step: int) -> Callable[[Path, str], bool]:
    """Return a predicate: this start of the run has logged (metrics.csv changed since `before`) and the
    training loss of `step` is in the file."""

    def ready(run: Path, before: str) -> bool:
        text = metrics_text(run)
        rows = csv.DictReader(text.splitlines())
        return text != before and any(r.get("train/loss") and int(r["step"]) == step for r in rows)

    return ready


#: (what the kill interrupts, whether checkpoint writes pause, when to send SIGKILL, the global step of the
#: last.ckpt that must be on disk after the kill: None for none)
KILL_POINTS: list[tuple[str, bool, Callable[[Path, str], bool], int | None]] = [
    ("the first checkpoint write", True, lambda run, _: bool(temporaries(run, "best.ckpt")), None),
    (
        "right after epoch 0's last.ckpt",
        False,
        lambda run, _: (run / "checkpoints" / "last.ckpt").is_file(),
        2,
    ),
    ("the middle of epoch 1", False, logged(2), 2),
    ("epoch 1's validation", False, logged(3), 2),
    ("the write of epoch 1's last.ckpt", True, lambda run, _: bool(temporaries(run, "last.ckpt")), 2),
]


def saved_step(run: Path) -> int | None:
    """Return the global step of the run's last.ckpt (None when there is none); it must load."""
    path = run / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def start(run: Path, env: dict[str, str], pause: bool) -> subprocess.Popen:
    """Start msr-train on EPOCHS_RUN in `run` (checkpoint writes held 1 s each with `pause`)."""
    slow = SLOW_CHECKPOINTS if pause else []
    command = [sys.executable, "-m", "msr.cli.train", *EPOCHS_RUN, *slow, f"hydra.run.dir={run}"]
    return subprocess.Popen(
        command, cwd=run.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str) -> None:
    """Send SIGKILL to `proc` as soon as `ready()`; fail if it ends first."""
    deadline = time.monotonic() + 300
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run ended before {what}:\n{proc.communicate()[1].decode()[-3000:]}")
        time.sleep(0.02)
    proc.kill()
    proc.wait()


def finish(proc: subprocess.Popen) -> None:
    """Wait for `proc` to end and assert it succeeded."""
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr.decode()[-3000:]


def rows_per_step(run: Path, column: str) -> Counter:
    """Return how many rows of metrics.csv hold `column`, per step."""
    with (run / "csv" / "metrics.csv").open(newline="") as f:
        return Counter(int(r["step"]) for r in csv.DictReader(f) if r.get(column))


def test_sigkill_at_five_points_then_resume_ends_as_the_uninterrupted_run(
    tmp_path, cli_env, uninterrupted
):
    reference = uninterrupted
    run = tmp_path / "killed"
    for what, pause, ready, step in KILL_POINTS:
        before = metrics_text(run)
        kill_when(start(run, cli_env, pause), lambda ready=ready, before=before: ready(run, before), what)
        assert saved_step(run) == step, what  # a kill during a write leaves the previous checkpoint whole
    finish(start(run, cli_env, pause=False))

    expected = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    got = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert got["global_step"] == expected["global_step"] == 4 and got["epoch"] == expected["epoch"]
    progress = "epoch_progress", "epoch_loop.batch_progress"
    assert [got["loops"]["fit_loop"][k]["total"] for k in progress] == [
        expected["loops"]["fit_loop"][k]["total"] for k in progress
    ]
    schedule, expected_schedule = got["lr_schedulers"][0], expected["lr_schedulers"][0]
    assert schedule["last_epoch"] == expected_schedule["last_epoch"] == 4
    assert schedule["_last_lr"] == expected_schedule["_last_lr"]
    assert all(float(s["step"]) == 4 for s in got["optimizer_states"][0]["state"].values())
    # the same weights, norm statistics and optimizer moments, bit for bit: the checkpoints carry the random
    # generators' states, so the resumed runs sampled the RoIs and pictures the uninterrupted run did
    assert got["state_dict"].keys() == expected["state_dict"].keys()
    differ = [k for k, v in expected["state_dict"].items() if not torch.equal(got["state_dict"][k], v)]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run's, first {differ[:3]}"
    moments, expected_moments = got["optimizer_states"][0]["state"], expected["optimizer_states"][0]["state"]
    assert moments.keys() == expected_moments.keys()
    for index, state in expected_moments.items():
        assert all(torch.equal(moments[index][k], state[k]) for k in ("exp_avg", "exp_avg_sq")), index

    for column in ("train/loss", "val/segm/AP", "lr-AdamW/pg1"):  # every row once, as in the reference
        assert rows_per_step(run, column) == rows_per_step(reference, column), column
    assert not list((run / "checkpoints").glob("*.tmp")) and not list((run / "checkpoints").glob(".*.tmp"))
