"""experiments/gpu_batch.sh, a time-boxed batch of msr commands for a GPU machine, run here on the CPU
(TRAINER=cpu): a bug in it costs GPU time that cannot be got back, so its run names, its
`+trainer.max_time` and its archive are checked here."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from support.cli import TINY
from support.env import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "gpu_batch.sh"


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_gpu_batch_stops_runs_at_their_share_evaluates_and_archives_them(tmp_path) -> None:
    out, study, cache = tmp_path / "out", tmp_path / "study", tmp_path / "cache"
    # One run: the quickstart's 5 epochs on 8 pictures are far more than its 2 s share of STUDY_S
    # (27 s, less 25 s of start-up), so +trainer.max_time stops it; it is evaluated all the same. An
    # override with '/' (data.cache_dir) must not become folders in the run's name, and so
    # many overrides must not make a file name longer than the system allows.
    tiny = [o for o in TINY if not o.startswith(("experiment=", "logger="))]
    run = ",".join(["head=maskiou", "seed=0", *tiny, f"data.cache_dir={cache}"])
    env = subprocess_env(
        cache,
        OUT=str(out),
        STUDY_DIR=str(study),
        WHEELS=str(tmp_path / "no_wheels"),
        PYTHON=sys.executable,
        TRAINER="cpu",
        EXPERIMENT="quickstart",
        RUNS=run,
        STUDY_S="27",
        GPU_BENCH_S="0",
    )
    proc = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    (log_file,) = [p for p in out.glob("*.log") if p.name != "gpu.log"]
    name = log_file.stem  # the overrides with '=', ',' and '/' as '_', too long here: cut, plus a checksum
    assert "/" not in name and len(name) <= 100 and name.startswith("head_maskiou_seed_0_data.num_train_8")
    log = log_file.read_text()
    assert (out / "runs.txt").read_text().splitlines() == [f"{run} exit 0"], log[-3000:]
    assert torch.__version__ in (out / "device.txt").read_text()
    assert "Time limit reached" in log, log[-3000:]  # Lightning stopped it at its share

    assert not (out / "study.tgz.part").exists()
    with tarfile.open(out / "study.tgz") as archive:
        members = archive.getnames()
        metrics = json.load(archive.extractfile(f"study/{name}/eval/val_metrics.json"))
    assert not [m for m in members if m.endswith(".ckpt")]
    assert "segm/AP" in metrics
    config = json.loads((study / name / "run_config.json").read_text())
    assert config["config"]["trainer"]["max_time"] == "00:00:00:02"
    # stopped by the time limit: fewer steps than the 5 epochs of 4 steps the schedule asks for
    assert 0 < metrics["global_step"] < 20
