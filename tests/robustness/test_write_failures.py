"""A write that fails for want of room (full disk, quota, file-size limit) ends in one line naming the file
and the cause, exit status 2, and leaves the earlier version whole. A file-size limit
(support/file_size_limit.py) makes real writes fail with EFBIG, as a full disk fails with ENOSPC."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image
from robust_cli import MODEL, SIZE, custom_data, run_cli, tiny_coco
from support.env import subprocess_env
from support.file_size_limit import overrides as size_limit

from msr.cli.failures import start_up_error_message, user_error_message
from msr.files import write_json_atomic

HERE = Path(__file__).resolve().parent


def test_checkpoint_and_metrics_rows_beyond_the_limit_keep_the_earlier_files(tmp_path: Path) -> None:
    """AtomicCheckpointIO (torch's zip writer) and the CSV logger's appends, in a limited subprocess."""
    ckpt, csv_dir = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "csv"
    code = f"""
import json, sys
import torch
from support.file_size_limit import limit_file_size
from msr.files import WriteFailed
from msr.training.checkpoint_io import AtomicCheckpointIO
from msr.training.csv_logger import ResumableExperimentWriter
io = AtomicCheckpointIO()
io.save_checkpoint({{"global_step": 1, "w": torch.zeros(10)}}, {str(ckpt)!r})
writer = ResumableExperimentWriter({str(csv_dir)!r})
writer.log_metrics({{"loss": 1.0}}, step=0)
writer.save()
limit_file_size(100_000)
messages = []
try:
    io.save_checkpoint({{"global_step": 2, "w": torch.zeros(1_000_000)}}, {str(ckpt)!r})
except WriteFailed as err:
    messages.append(str(err))
writer.log_metrics({{"loss": 0.5}}, step=1)
writer.save()
writer.log_metrics({{"loss": 0.25, "note": "x" * 200_000}}, step=2)  # a new column: the file is rewritten
try:
    writer.save()
except WriteFailed as err:
    messages.append(str(err))
for step in range(3, 20_000):
    writer.log_metrics({{"loss": 0.125}}, step=step)
try:
    writer.save()
except WriteFailed as err:
    messages.append(str(err))
print(json.dumps(messages))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint, rewrite, append = json.loads(proc.stdout)
    assert checkpoint.startswith(f"cannot write {ckpt}: file too large")
    assert "(EFBIG); the earlier last.ckpt is kept whole" in checkpoint
    assert torch.load(ckpt, weights_only=True)["global_step"] == 1  # the earlier checkpoint loads
    metrics = csv_dir / "metrics.csv"
    for message in (rewrite, append):
        assert message.startswith(f"cannot write {metrics}: file too large")
    assert metrics.read_text().splitlines() == ["loss,step", "1.0,0", "0.5,1"]  # no partial row
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary file left


def error_line(proc: subprocess.CompletedProcess, program: str) -> str:
    """Return the one error line of a run that must end with exit status 2 and no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{program}: error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_msr_train_checkpoint_beyond_the_limit_is_one_line(tmp_path: Path, cli_env) -> None:
    """The run's small files fit in 1 MB, its checkpoint does not: one line names it, no partial file."""
    data = custom_data(tiny_coco(tmp_path / "data"))
    run = tmp_path / "run"
    args = [*MODEL, "schedule=cpu_tiny", *data, f"hydra.run.dir={run}", *size_limit(1_000_000)]
    proc = run_cli("train", *args, env=cli_env, cwd=tmp_path, check=False)
    line = error_line(proc, "msr-train")
    assert line.startswith(f"msr-train: error: cannot write {run / 'checkpoints'}/"), line
    assert ".ckpt: file too large (over the file-size limit" in line and "(EFBIG)" in line
    assert "unexpected pos" not in proc.stderr
    assert list((run / "checkpoints").iterdir()) == []  # neither a checkpoint nor a temporary file
    assert (run / "train.log").read_text().rstrip().splitlines()[-1].endswith(line)


def test_results_files_beyond_the_limit_are_one_line(tmp_path: Path, cli_env, checkpoint) -> None:
    """msr-predict's results JSON and msr-eval's metrics file: the earlier versions stay whole."""
    env = cli_env
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(3):
        Image.effect_noise((SIZE, SIZE), 60 + 20 * i).convert("RGB").save(pictures / f"{i}.png")
    out = tmp_path / "predict"
    earlier = write_json_atomic([], out / "bbox_results.json")  # an earlier run's results in the folder
    args = [f"ckpt_path={checkpoint}", f"images={pictures}", "overlays=false", f"hydra.run.dir={out}"]
    proc = run_cli("predict", *args, *size_limit(1), env=env, cwd=tmp_path, check=False)
    line = error_line(proc, "msr-predict")
    assert line.startswith(f"msr-predict: error: cannot write {earlier}: file too large"), line
    assert "the earlier bbox_results.json is kept whole" in line
    assert earlier.read_text() == "[]" and not list(out.glob(".*.tmp"))

    val = tiny_coco(tmp_path / "gt")["val"]
    detection = {"image_id": 5, "category_id": 1, "bbox": [8.0, 8.0, 32.0, 32.0], "score": 0.9}
    results = write_json_atomic([detection], tmp_path / "results.json")
    scored = write_json_atomic({"earlier": 1}, tmp_path / "eval_run" / "eval" / "scored_metrics.json")
    args = [f"results={results}", f"ann_file={val}", f"hydra.run.dir={tmp_path / 'eval_run'}"]
    proc = run_cli("evaluate", *args, *size_limit(100), env=env, cwd=tmp_path, check=False)
    line = error_line(proc, "msr-eval")
    assert line.startswith(f"msr-eval: error: cannot write {scored}: file too large"), line
    assert json.loads(scored.read_text()) == {"earlier": 1}


def test_a_full_disk_outside_msr_writers_is_one_line_too(tmp_path: Path, cli_env) -> None:
    """Hydra's own files (.hydra/*.yaml, written before the job starts) and an OSError naming its file."""
    code = f"""
import sys
from support.file_size_limit import limit_file_size
limit_file_size(200)
sys.argv = ["msr-predict", "ckpt_path=any.ckpt", "images={tmp_path}", "hydra.run.dir={tmp_path / "run"}"]
from msr.cli.predict import main
main()
"""
    command = [sys.executable, "-c", code]
    proc = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=300)
    line = error_line(proc, "msr-predict")
    assert line.startswith("msr-predict: error: cannot write the run folder: file too large (over the file")
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/a/wandb/run.wandb")
    assert user_error_message(full) == (
        "cannot write /runs/a/wandb/run.wandb: no space left on the device (ENOSPC); free some space (or "
        "raise the quota or the file-size limit) or write elsewhere, then run again"
    )
    denied = OSError(errno.EACCES, "Permission denied", "/runs/a")
    assert start_up_error_message(denied).startswith("cannot write the run folder (/runs/a: Permission")
