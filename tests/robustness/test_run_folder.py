"""One run per folder (msr.run_lock): a run holds its folder while it runs; a second run there stops with one
line naming the folder and the running process (exit status 2); a killed run leaves no stuck lock; a new
training run does not overwrite an earlier run's checkpoints unless it resumes or is told to; other DDP
ranks and multirun jobs are unaffected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from robust_cli import run_batch, tiny_coco

from msr.files import write_json_atomic
from msr.run_lock import (
    LOCK_FILE,
    FolderHoldsRun,
    FolderInUse,
    hold_folder,
    hold_run_folder,
    is_resuming,
)

#: A process that holds the folder argv[1] as msr-train until it is killed.
HOLDER = """
import sys, time
from msr.run_lock import hold_folder
with hold_folder(sys.argv[1], "msr-train"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_elsewhere(folder: Path) -> subprocess.Popen:
    """Return a running process that holds `folder` (it has taken the lock when this returns)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Kill `proc` with SIGKILL and reap it."""
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()


def test_a_second_run_is_refused_and_a_killed_one_leaves_no_stuck_lock(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = hold_elsewhere(folder)
    try:
        with pytest.raises(FolderInUse) as refused, hold_folder(folder, "msr-eval"):
            pass
        message = str(refused.value)
        assert message.startswith(f"the run folder {folder} is in use by msr-train (process {holder.pid} on ")
        assert "wait until it ends, or give this run its own folder with hydra.run.dir=<folder>" in message
        assert "\n" not in message
    finally:
        stop(holder)  # SIGKILL: no clean-up ran, the lock file stays
    assert (folder / LOCK_FILE).is_file()
    this_process = pytest.raises(FolderInUse, match=rf"in use by msr-eval \(process {os.getpid()} ")
    with hold_folder(folder, "msr-eval"), this_process, hold_folder(folder, "msr-predict"):
        pass
    with hold_folder(folder, "msr-eval"):  # released at the end of the block
        pass


@pytest.mark.parametrize(
    "ranks",
    [
        {"LOCAL_RANK": "1"},
        {"RANK": "3", "LOCAL_RANK": "1"},
        {"NODE_RANK": "1", "LOCAL_RANK": "0"},
        {"SLURM_PROCID": "2"},
    ],
)
def test_other_ranks_neither_lock_nor_refuse(tmp_path: Path, monkeypatch, ranks) -> None:
    """A DDP rank other than 0 (or the first process of another node) runs beside rank 0 in its folder."""
    folder = tmp_path / "run"
    write_json_atomic({}, folder / "checkpoints" / "last.ckpt")
    holder = hold_elsewhere(folder)
    try:
        for key, value in ranks.items():
            monkeypatch.setenv(key, value)
        with hold_run_folder(folder, resuming=False, overwrite=False), hold_folder(folder, "msr-eval"):
            pass
        with hold_run_folder(folder, resuming=False, overwrite=True):
            pass
        assert (folder / "checkpoints" / "last.ckpt").is_file()  # only rank 0 may delete an earlier run
    finally:
        stop(holder)


def earlier_run(folder: Path) -> None:
    """Write the files a finished training run leaves in `folder`."""
    for name in ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "eval/val_metrics.json"):
        write_json_atomic({"earlier": name}, folder / name)
    write_json_atomic({}, folder / "run_config.json")
    for name in ("csv/metrics.csv", "figures/step_4/calibration.png", "wandb_run.json", "train.log"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("earlier")
    write_json_atomic({}, folder / ".hydra" / "config.yaml")


def files(folder: Path) -> list[str]:
    """Return the files under `folder` (relative, sorted), its lock file left out."""
    found = (p for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE)
    return sorted(p.relative_to(folder).as_posix() for p in found)


def test_a_new_run_over_checkpoints_resumes_or_overwrites_or_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    earlier_run(folder)
    before = files(folder)
    with pytest.raises(FolderHoldsRun) as refused, hold_run_folder(folder, resuming=False, overwrite=False):
        pass
    message = str(refused.value)
    assert message.startswith(
        f"the run folder {folder} holds the checkpoints of an earlier run (checkpoints/best.ckpt, "
        "checkpoints/last.ckpt); resume that run with ckpt_path=auto, start over in its folder with "
        "overwrite=true (its checkpoints, metrics, evaluations and figures are deleted)"
    )
    assert "give this run its own folder with hydra.run.dir=<folder>" in message
    with hold_run_folder(folder, resuming=True, overwrite=False):  # the refusal released the folder
        pass
    with hold_run_folder(folder, resuming=True, overwrite=True):  # a resume keeps what it resumes
        pass
    assert files(folder) == before  # nothing touched
    with hold_run_folder(folder, resuming=False, overwrite=True):
        kept = files(folder)
    assert kept == [".hydra/config.yaml", "train.log"]  # Hydra's files and the log stay


def test_which_checkpoint_paths_resume_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    assert is_resuming("auto", folder) and is_resuming("last", folder)
    assert is_resuming(str(folder / "checkpoints" / "best.ckpt"), folder)
    assert not is_resuming(None, folder) and not is_resuming("null", folder)
    assert not is_resuming(str(tmp_path / "other" / "checkpoints" / "last.ckpt"), folder)


def test_programs_refuse_a_held_folder_and_multirun_jobs_are_unaffected(tmp_path: Path, cli_env) -> None:
    """msr-predict and msr-eval in a folder held by a running msr-train, msr-eval in a finished training
    run's folder, and an msr-eval multirun of two jobs, all in one process (run_batch)."""
    val = tiny_coco(tmp_path / "data")["val"]
    detection = {"image_id": 5, "category_id": 1, "bbox": [8.0, 8.0, 32.0, 32.0], "score": 0.9}
    results = write_json_atomic([detection], tmp_path / "results.json")
    score = [f"results={results}", f"ann_file={val}"]
    held, finished, sweep = tmp_path / "held", tmp_path / "finished", tmp_path / "sweep"
    running = write_json_atomic({"running": 1}, held / "eval" / "scored_metrics.json")
    earlier_run(finished)
    cases = [
        {
            "name": "predict_held",
            "program": "predict",
            "argv": [f"ckpt_path={tmp_path / 'any.ckpt'}", f"images={tmp_path}", f"hydra.run.dir={held}"],
        },
        {"name": "eval_held", "program": "evaluate", "argv": [*score, f"hydra.run.dir={held}"]},
        {"name": "eval_finished", "program": "evaluate", "argv": [*score, f"hydra.run.dir={finished}"]},
        {
            "name": "eval_multirun",
            "program": "evaluate",
            "argv": [
                "--multirun",
                *score,
                "evaluation.backend=faster_coco_eval,pycocotools",
                f"hydra.sweep.dir={sweep}",
            ],
        },
    ]
    holder = hold_elsewhere(held)
    try:
        outcome = run_batch(cases, cli_env, tmp_path)
    finally:
        stop(holder)
    for name, program in (("predict_held", "msr-predict"), ("eval_held", "msr-eval")):
        case = outcome[name]
        assert case["rc"] == 2 and "Traceback" not in case["stderr"], case["stderr"][-3000:]
        lines = [line for line in case["stderr"].splitlines() if line.startswith(f"{program}: error: ")]
        assert len(lines) == 1, case["stderr"][-3000:]
        expected = f"{program}: error: the run folder {held} is in use by msr-train (process {holder.pid} on "
        assert lines[0].startswith(expected), lines[0]
    assert json.loads(running.read_text()) == {"running": 1}  # the running run's file is untouched
    for name in ("eval_finished", "eval_multirun"):
        assert outcome[name]["rc"] == 0, outcome[name]["stderr"][-3000:]
    assert json.loads((finished / "eval" / "scored_metrics.json").read_text())["bbox/AP"] >= 0
    assert (finished / "checkpoints" / "last.ckpt").is_file()  # msr-eval does not refuse nor delete them
    for job in ("0", "1"):
        assert json.loads((sweep / job / "eval" / "scored_metrics.json").read_text())["bbox/AP"] >= 0


def test_msr_train_holds_its_folder_end_to_end_and_head_only(tmp_path: Path, cli_env) -> None:
    """msr-train (end to end and head-only) refuses a held folder and a finished run's folder in one line,
    and overwrite=true trains there anew; all in one process (run_batch)."""
    from robust_cli import TINY

    held, finished, again = tmp_path / "held", tmp_path / "finished", tmp_path / "again"
    earlier_run(finished)
    earlier_run(again)
    tiny = [*TINY, "schedule=cpu_tiny", "callbacks.figures=null"]
    cases = [
        {"name": "held", "program": "train", "argv": [*tiny, f"hydra.run.dir={held}"]},
        {
            "name": "held_head_only",
            "program": "train",
            "argv": [*tiny, "protocol=head_only", f"hydra.run.dir={held}"],
        },
        {"name": "finished", "program": "train", "argv": [*tiny, f"hydra.run.dir={finished}"]},
        {
            "name": "overwrite",
            "program": "train",
            "argv": [*tiny, "overwrite=true", f"hydra.run.dir={again}"],
        },
    ]
    holder = hold_elsewhere(held)
    try:
        outcome = run_batch(cases, cli_env, tmp_path)
    finally:
        stop(holder)
    for name, folder, text in (
        ("held", held, f"is in use by msr-train (process {holder.pid} on "),
        ("held_head_only", held, f"is in use by msr-train (process {holder.pid} on "),
        ("finished", finished, "holds the checkpoints of an earlier run"),
    ):
        case = outcome[name]
        lines = [line for line in case["stderr"].splitlines() if line.startswith("msr-train: error: ")]
        assert case["rc"] == 2 and len(lines) == 1 and "Traceback" not in case["stderr"], case["stderr"][
            -3000:
        ]
        assert lines[0].startswith(f"msr-train: error: the run folder {folder} ") and text in lines[0], lines[
            0
        ]
    assert json.loads((finished / "checkpoints" / "last.ckpt").read_text()) == {
        "earlier": "checkpoints/last.ckpt"
    }
    assert not (held / "checkpoints").exists()
    assert outcome["overwrite"]["rc"] == 0, outcome["overwrite"]["stderr"][-3000:]
    import torch

    assert torch.load(again / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
