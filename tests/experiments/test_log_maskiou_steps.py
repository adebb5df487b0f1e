"""experiments/log_maskiou_steps.py: one line per training step of what the MaskIoU loss saw."""

from __future__ import annotations

import re
import subprocess
import sys

from support.cli import TINY
from support.env import subprocess_env
from support.paths import ROOT

LINE = re.compile(
    r"^(\d+) kept=(\d+)/(\d+) pred_mean=\S+ pred_absmax=\S+ kept_pred=\S+ kept_target=\S+ "
    r"roi_iou_max=\S+ loss=(\S+)$"
)


def test_a_short_run_logs_every_training_step(tmp_path):
    record = tmp_path / "steps.txt"
    command = [sys.executable, str(ROOT / "experiments" / "log_maskiou_steps.py"), str(record), *TINY]
    command += ["schedule.max_steps=2", "final_eval=false", f"hydra.run.dir={tmp_path / 'run'}"]
    env = subprocess_env(tmp_path / "cache")
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [LINE.match(line) for line in record.read_text().splitlines()]
    assert [m.group(1) for m in lines if m] == ["0", "1"], record.read_text()
    for match in lines:  # tau = 0: every positive RoI with some overlap is kept, the loss is finite
        assert int(match.group(2)) <= int(match.group(3)) and float(match.group(4)) >= 0
