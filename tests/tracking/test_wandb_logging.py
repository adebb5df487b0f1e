"""W&B logging read back from the files of real offline runs of msr-train (no network, no mocks)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from wandb_cli import TINY_WANDB, run_cli
from wandb_files import config_values, history_rows, offline_runs, read_records, run_log, run_record

from msr.viz.calibration import CALIBRATION_FIGURE_SIZE
from msr.viz.labels import caption_height

SIZE = 3 * 128  # the synthetic pictures' side, enlarged 3x to reach the 384-pixel minimum
PAIR = (2 * SIZE + 4, SIZE + caption_height(SIZE, SIZE))  # GT | prediction, 4 px apart, captioned


def job_records(job: Path, index: int = 0) -> list:
    """Return the records of the `index`-th offline W&B run written in a job's folder."""
    runs = offline_runs(job)
    assert runs, f"no offline W&B run under {job}"
    return read_records(run_log(runs[index]))


def git_head() -> str | None:
    here = Path(__file__).parent
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here)
    return done.stdout.strip() if done.returncode == 0 else None


def test_multirun_jobs_are_one_group_with_own_runs(offline_sweep):
    runs = [run_record(job_records(job)) for job in offline_sweep["jobs"]]
    sweep_name = offline_sweep["sweep"].name
    assert runs[0].run_group == runs[1].run_group == f"quickstart/{sweep_name}"
    assert runs[0].run_id != runs[1].run_id
    # named by job number and the swept parameters only
    assert [r.display_name for r in runs] == ["quickstart-0 [seed=0]", "quickstart-1 [seed=1]"]
    assert {"head:maskiou", "backbone:resnet18", "data:synthetic"} <= set(runs[0].tags)
    for job, run in zip(offline_sweep["jobs"], runs):
        stored = json.loads((job / "wandb_run.json").read_text())
        assert stored["id"] == run.run_id and stored["group"] == run.run_group


def test_offline_run_holds_config_commit_and_versions(offline_sweep):
    import torch

    config = config_values(job_records(offline_sweep["jobs"][1]))
    assert config["config"]["name"] == "quickstart"
    assert config["config"]["seed"] == 1
    assert config["config"]["model"]["maskiou_head"]["_target_"] == "msr.models.maskiou.ConcatMaskIoUHead"
    assert config["run"]["git"]["commit"] == git_head()
    assert config["run"]["versions"]["torch"] == torch.__version__.split("+")[0]
    assert config["run"]["versions"]["msr"] is not None
    # the same record is written next to the run for users without W&B
    on_disk = json.loads((offline_sweep["jobs"][1] / "run_config.json").read_text())
    assert on_disk["config"]["seed"] == 1 and on_disk["run"]["git"] == config["run"]["git"]


def test_offline_run_holds_losses_lr_and_ap(offline_sweep):
    rows = history_rows(job_records(offline_sweep["jobs"][0]))
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)  # log_every_n_steps=1, 4 steps
    assert any(k.startswith("lr-") for r in rows for k in r)
    for name in ("loss_mask", "loss_maskiou", "loss_classifier"):
        assert any(f"train/{name}" in r for r in rows)
    evals = [r for r in rows if "val/segm/AP" in r]
    assert len(evals) == 1
    media = [r for r in rows if "val/samples" in r]
    assert len(media) == 1 and media[0]["trainer/global_step"] == evals[0]["trainer/global_step"]
    metrics = json.loads((offline_sweep["jobs"][0] / "eval" / "val_metrics.json").read_text())
    assert evals[0]["val/segm/AP"] == pytest.approx(max(metrics["segm/AP"], 0.0))
    assert evals[0]["val/bbox/AP"] == pytest.approx(metrics["bbox/AP"])


def test_a_wandb_run_keeps_every_scalar_in_the_run_folder_too(offline_sweep):
    import csv

    rows = history_rows(job_records(offline_sweep["jobs"][0]))
    with (offline_sweep["jobs"][0] / "csv" / "metrics.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    losses = {int(r["step"]): float(r["train/loss"]) for r in table if r.get("train/loss")}
    in_wandb = {int(r["trainer/global_step"]): r["train/loss"] for r in rows if "train/loss" in r}
    assert losses == pytest.approx(in_wandb) and len(losses) == 4  # the same values, by training step
    evaluated = [r for r in table if r.get("val/segm/AP")]
    assert len(evaluated) == 1 and int(evaluated[0]["step"]) == 4


def test_wandb_step_is_the_training_step_for_scalars_and_media(offline_sweep):
    records = [r for r in job_records(offline_sweep["jobs"][0]) if r.WhichOneof("record_type") == "history"]
    rows = history_rows(records)
    assert [r.history.step.num for r in records] == [row["trainer/global_step"] for row in rows]
    media = [
        r
        for r in records
        if any("val/samples" in "/".join(i.nested_key) or i.key == "val/samples" for i in r.history.item)
    ]
    assert [r.history.step.num for r in media] == [4]  # the step of the evaluation, not a count of calls


def test_offline_run_holds_sample_images_calibration_and_class_table(offline_sweep):
    job = offline_sweep["jobs"][0]
    folder = offline_runs(job)[0] / "files"
    rows = history_rows(job_records(job))
    media = next(r for r in rows if "val/samples" in r)
    samples = media["val/samples"]
    assert samples["count"] == 2 and len(samples["filenames"]) == 2
    for name in samples["filenames"]:
        with Image.open(folder / name) as picture:
            assert picture.size == PAIR
    with Image.open(folder / media["val/calibration"]["path"]) as picture:
        assert picture.size == CALIBRATION_FIGURE_SIZE
    table = json.loads((folder / media["val/per_class_ap"]["path"]).read_text())
    assert table["columns"] == ["class", "bbox AP", "segm AP"]
    classes = [row[0] for row in table["data"]]
    assert len(classes) == len(set(classes)) > 1
    points = json.loads((folder / media["val/calibration_points"]["path"]).read_text())
    assert points["columns"] == ["true_iou", "class_score", "mask_score", "pred_iou"]
    assert all(0 < row[0] <= 1 for row in points["data"])  # matched detections only


def test_png_figures_in_the_run_folder(offline_sweep):
    step = offline_sweep["jobs"][0] / "figures" / "step_0000004"
    samples = sorted((step / "samples").glob("*.png"))
    assert len(samples) == 2
    for path in [*samples, step / "calibration.png"]:
        with Image.open(path) as picture:
            picture.verify()  # a complete, valid PNG
        with Image.open(path) as picture:
            expected = CALIBRATION_FIGURE_SIZE if path.name == "calibration.png" else PAIR
            assert picture.format == "PNG" and picture.size == expected
            assert np.asarray(picture).std() > 0  # something was drawn
    lines = (step / "per_class_ap.csv").read_text().splitlines()
    assert lines[0] == "class,bbox AP,segm AP" and len(lines) > 2


def test_aggregator_reads_a_real_multirun(offline_sweep, tmp_path):
    # (before the resume test below, which changes job 0's overrides)
    from msr.studies.aggregate import aggregate

    _, csv_path = aggregate([offline_sweep["sweep"]], tmp_path / "table")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["seeds"] == "2"  # one variant: the two jobs differ only by seed
    jobs = offline_sweep["jobs"]
    aps = [json.loads((job / "eval" / "val_metrics.json").read_text())["segm/AP"] for job in jobs]
    assert float(rows[0]["segm AP mean"]) == pytest.approx(sum(aps) / 2)


def test_resume_continues_the_same_wandb_run(offline_sweep, wandb_env):
    job = offline_sweep["jobs"][0]
    first_records = job_records(job)
    first = run_record(first_records)
    first_steps = [r["trainer/global_step"] for r in history_rows(first_records) if "train/loss" in r]
    overrides = [*TINY_WANDB, "trainer.max_steps=6", "ckpt_path=last", f"hydra.run.dir={job}"]
    run_cli("train", *overrides, env=wandb_env, cwd=offline_sweep["root"])
    runs = offline_runs(job)
    assert len(runs) == 2  # one offline folder per process, both for the same run id
    resumed_records = read_records(run_log(runs[1]))
    resumed = run_record(resumed_records)
    assert resumed.run_id == first.run_id
    assert resumed.run_group == first.run_group and resumed.display_name == first.display_name
    steps = [r["trainer/global_step"] for r in history_rows(resumed_records) if "train/loss" in r]
    assert len(first_steps) == 4 and len(steps) == 2
    assert steps == sorted(steps) and min(steps) > max(first_steps)  # the W&B step axis goes on
    history = [r for r in resumed_records if r.WhichOneof("record_type") == "history"]
    assert [r.history.step.num for r in history] == [
        row["trainer/global_step"] for row in history_rows(history)
    ]


DISABLED_SCRIPT = r"""
import atexit, json, socket, subprocess, sys
events = []
for name in ("connect", "connect_ex", "bind", "listen", "sendto"):
    original = getattr(socket.socket, name)
    def spy(self, *args, _name=name, _original=original):
        events.append([_name, repr(args)])
        return _original(self, *args)
    setattr(socket.socket, name, spy)
popen_init = subprocess.Popen.__init__
def popen(self, args, *rest, **kwargs):
    events.append(["popen", repr(args)])
    return popen_init(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = popen
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(events)))
sys.argv = ["msr-train", *sys.argv[2:]]
from msr.cli.train import main
main()
"""


def test_disabled_mode_writes_no_wandb_files_and_opens_no_socket(tmp_path, wandb_env):
    run, events_file, home = tmp_path / "run", tmp_path / "events.json", tmp_path / "home"
    wandb_dirs = {f"WANDB_{k.upper()}_DIR": home / k for k in ("config", "cache", "data")}
    env = {**wandb_env, "HOME": str(home), **{k: str(v) for k, v in wandb_dirs.items()}}
    overrides = [*TINY_WANDB, "logger.mode=disabled", "trainer.max_steps=2", f"hydra.run.dir={run}"]
    command = [sys.executable, "-c", DISABLED_SCRIPT, str(events_file), *overrides]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = json.loads(events_file.read_text())
    sockets = [e for e in events if e[0] != "popen"]
    # urllib3 probes IPv6 support at import by binding ("::1", 0) and closing; nothing else may happen
    assert [e for e in sockets if e != ["bind", "(('::1', 0),)"]] == []  # no connect, listen, send
    processes = [e[1] for e in events if e[0] == "popen"]
    assert not [p for p in processes if "wandb" in p], processes  # no wandb-core service started
    assert not (run / "wandb").exists() and not (run / "wandb_run.json").exists()
    assert not [p for d in wandb_dirs.values() for p in d.rglob("*")]  # W&B's own folders stay empty
    assert not [p for p in home.rglob("*") if "wandb" in p.name]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "figures").glob("step_*/calibration.png"))  # the pictures do not need W&B


def test_jobs_of_a_shared_head_pass_keep_their_own_wandb_runs(tmp_path, wandb_env):
    """Two head-only jobs trained in one pass: each its own offline W&B run in the sweep's group, with its
    own losses, learning rate, metrics and pictures at the training step."""
    sweep = tmp_path / "sweep"
    run_cli(
        "train",
        "--multirun",
        *TINY_WANDB,
        "protocol=head_only",
        f"protocol.trunk_cache={tmp_path / 'trunks'}",
        "head=maskiou,maskiou_multiply",
        f"hydra.sweep.dir={sweep}",
        env=wandb_env,
        cwd=tmp_path,
    )
    jobs = [sweep / "0", sweep / "1"]
    records = [job_records(job) for job in jobs]
    runs = [run_record(r) for r in records]
    assert runs[0].run_group == runs[1].run_group == f"quickstart/{sweep.name}"
    assert runs[0].run_id != runs[1].run_id
    assert [len(offline_runs(job)) for job in jobs] == [1, 1]  # no job's run took another's metrics
    finals = []
    for job, job_records_ in zip(jobs, records):
        rows = history_rows(job_records_)
        losses = [r["train/loss_maskiou"] for r in rows if "train/loss_maskiou" in r]
        assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
        assert any("lr-AdamW/pg1" in r for r in rows)  # its own two parameter groups, named as alone
        evals = [r for r in rows if "val/segm/AP" in r]
        media = [r for r in rows if "val/samples" in r]
        assert len(evals) == 1 and len(media) == 1
        assert media[0]["trainer/global_step"] == evals[0]["trainer/global_step"] == 4
        metrics = json.loads((job / "eval" / "val_metrics.json").read_text())
        assert evals[0]["val/segm/AP"] == pytest.approx(max(metrics["segm/AP"], 0.0))
        assert evals[0]["val/calib/num_detections"] == metrics["calib/num_detections"] > 0
        finals.append(losses[-1])
        assert config_values(job_records_)["trunk"]["source"] == "trained"
    assert finals[0] != finals[1]  # two heads, two sets of losses
