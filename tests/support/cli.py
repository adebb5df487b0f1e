"""Run the real console programs as subprocesses through Hydra, one
program a process or several in one (run_batch: a process's start-up costs seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: 8 train and 5 (odd) val pictures of 128 px: the data of every entry-point test.
TINY_DATA = [
    "data.num_train=8",
    "data.num_val=5",
    "data.num_workers=0",
    "data.batch_size=2",
    "data.eval_batch_size=2",
]
#: msr-train overrides: the quickstart recipe with fewer RoIs, on TINY_DATA, logging every step.
TINY = [
    "experiment=quickstart",
    *TINY_DATA,
    "model.rpn_post_nms_top_n_test=50",
    "model.box_batch_size_per_image=32",
    "model.box_detections_per_img=10",
    "logger=csv",
    "trainer.log_every_n_steps=1",
]


def run_cli(program: str, *overrides: str, env: dict[str, str], cwd: Path, check: bool = True):
    """Run `python -m msr.cli.<program> overrides...`; return the CompletedProcess (text output)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"msr.cli.{program}", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"msr.cli.{program} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def run_batch(cases: list[dict], env: dict[str, str], cwd: Path) -> dict[str, dict]:
    """Run every case `{"name", "program", "argv", "env"?}` through `msr.cli.<program>.main` in one
    subprocess; return {name: {"rc", "stdout", "stderr"}}."""
    spec, results = cwd / "batch_cases.json", cwd / "batch_results.json"
    spec.write_text(json.dumps(cases))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / "cli_batch.py"), str(spec), str(results)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(f"cli_batch.py failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    return json.loads(results.read_text())


def train_case(name: str, *argv: str) -> dict:
    """Return a run_batch case of msr-train with `argv`."""
    return {"name": name, "program": "train", "argv": list(argv)}


def succeeded(results: dict[str, dict], name: str) -> str:
    """Return the stdout of the run_batch case `name`, asserting that it exited 0."""
    result = results[name]
    assert result["rc"] == 0, f"{name} failed ({result['rc']}):\n{result['stderr'][-5000:]}"
    return result["stdout"]
