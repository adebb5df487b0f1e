"""The head-only protocol through the real CLI: the trunk trains once (as a Hydra job of its own) and is
cached; the heads of a sweep's jobs that share it train in one pass, each job with its own complete run
folder, and a job trained in a pass ends exactly as the same job trained alone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.cli import TINY, run_batch, run_cli, train_case
from support.env import subprocess_env

from msr.studies.intervals import read_trunk

HEAD = "net.roi_heads.maskiou_head."
#: The trunk trains 2 epochs (8 pictures at 2 a step: 8 steps), each head 1 (protocol.head_max_epochs).
HEAD_ONLY = [
    *TINY,
    "schedule=cpu_quick",
    "schedule.max_epochs=2",
    "protocol=head_only",
    "protocol.head_max_epochs=1",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Return the subprocess environment with this file's own data and trunk cache."""
    return subprocess_env(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def study(env, tmp_path_factory) -> dict:
    """Run a two-design head-only sweep (one pass), then one of its designs alone on the cached trunk."""
    root = tmp_path_factory.mktemp("study")
    trunks = root / "trunks"
    overrides = [*HEAD_ONLY, f"protocol.trunk_cache={trunks}"]
    sweep = run_cli(
        "train",
        "--multirun",
        *overrides,
        "head=maskiou,maskiou_multiply",
        f"hydra.sweep.dir={root / 'sweep'}",
        env=env,
        cwd=root,
    )
    alone = run_cli(
        "train", *overrides, "head=maskiou_multiply", f"hydra.run.dir={root / 'alone'}", env=env, cwd=root
    )
    return {
        "root": root,
        "trunks": trunks,
        "overrides": overrides,
        "jobs": [root / "sweep" / "0", root / "sweep" / "1"],
        "alone": root / "alone",
        "sweep_out": sweep.stdout + sweep.stderr,
        "alone_out": alone.stdout,
    }


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def detections(job: Path) -> list[tuple]:
    """Return each segm detection's picture, class, mask and class score (what the trunk decides)."""
    segm = json.loads((job / "eval" / "segm_results.json").read_text())
    return [(r["image_id"], r["category_id"], r["segmentation"]["counts"], r["class_score"]) for r in segm]


def test_a_sweeps_heads_share_one_cached_trunk_and_score_the_same_masks(study):
    jobs, trunks = study["jobs"], study["trunks"]
    records = [json.loads((job / "run_config.json").read_text())["trunk"] for job in jobs]
    assert records[0] == records[1] and records[0]["source"] == "trained"
    assert [p.name for p in trunks.iterdir() if p.is_dir()] == [records[0]["key"]]  # trained once
    assert "share one trunk and train in one pass" in study["sweep_out"]
    trunk = ckpt(records[0]["checkpoint"])
    assert trunk["global_step"] == 8 and not any("maskiou" in k for k in trunk["state_dict"])
    for job in jobs:
        state = ckpt(job / "checkpoints" / "last.ckpt")
        assert state["global_step"] == 4  # the head's own, shorter schedule on the full trunk
        assert (job / "checkpoints" / "best.ckpt").is_file() and (job / "csv" / "metrics.csv").is_file()
        assert state["hyper_parameters"]["trunk"] == records[0]
        for key, value in trunk["state_dict"].items():  # weights and BatchNorm statistics untouched
            assert torch.equal(state["state_dict"][key], value), key
        log = (job / "train.log").read_text()
        assert "2 heads in one pass" in log and "head=maskiou, head=maskiou_multiply" in log
    first, second = detections(jobs[0]), detections(jobs[1])
    assert first and first == second  # the very same boxes and masks, ranked by different MaskIoU heads
    ious = [json.loads((job / "eval" / "segm_results.json").read_text())[0]["mask_iou"] for job in jobs]
    assert ious[0] != ious[1]
    # msr-aggregate pairs the trunk's own run (Mask R-CNN) with the head-only jobs as sharing that trunk
    trunk_run = Path(records[0]["run"])
    assert (trunk_run / ".hydra" / "overrides.yaml").is_file()  # a Hydra job of its own
    assert "head=none" in (trunk_run / ".hydra" / "overrides.yaml").read_text()
    assert [read_trunk(folder) for folder in (trunk_run, *jobs)] == [records[0]["key"]] * 3


def test_a_head_trained_in_a_shared_pass_ends_as_the_same_head_trained_alone(study, env):
    shared, alone = study["jobs"][1], study["alone"]
    assert "1 head in one pass" in (alone / "train.log").read_text()
    a, b = ckpt(shared / "checkpoints" / "last.ckpt"), ckpt(alone / "checkpoints" / "last.ckpt")
    heads = [k for k in a["state_dict"] if k.startswith(HEAD)]
    assert heads and set(a["state_dict"]) == set(b["state_dict"])
    assert max(float((a["state_dict"][k] - b["state_dict"][k]).abs().max()) for k in heads) <= 1e-6
    assert (shared / "eval" / "segm_results.json").read_bytes() == (
        alone / "eval" / "segm_results.json"
    ).read_bytes()
    # and msr-eval rebuilds the job's detector from its own checkpoint and scores exactly what it scored
    root = study["root"]
    run_cli(
        "evaluate",
        f"ckpt_path={shared / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={root / 'eval'}",
        env=env,
        cwd=root,
    )
    assert (root / "eval" / "eval" / "segm_results.json").read_bytes() == (
        shared / "eval" / "segm_results.json"
    ).read_bytes()


def test_a_stopped_pass_and_a_stopped_trunk_resume(study, env):
    root, jobs = study["root"], study["jobs"]
    # the same sweep, its heads trained one epoch longer, resumes each job from its last.ckpt
    longer = [o.replace("head_max_epochs=1", "head_max_epochs=2") for o in study["overrides"]] + [
        "ckpt_path=auto"
    ]
    run_cli(
        "train",
        "--multirun",
        *longer,
        "head=maskiou,maskiou_multiply",
        f"hydra.sweep.dir={root / 'sweep'}",
        env=env,
        cwd=root,
    )
    for job in jobs:
        state = ckpt(job / "checkpoints" / "last.ckpt")
        assert state["global_step"] == 8
        assert (
            int(state["optimizer_states"][0]["state"][0]["step"]) == 8
        )  # its optimizer resumed, not restarted
        assert "ckpt_path=auto: resuming from" in (job / "train.log").read_text()
        steps = [row.split(",") for row in (job / "csv" / "metrics.csv").read_text().splitlines()[1:]]
        assert len({r[3] for r in steps}) >= 8  # one history of 8 steps, not two
    # a trunk whose training was stopped before it was recorded as done resumes from its last.ckpt
    record = next(study["trunks"].glob("*/trunk.json"))
    checkpoint = json.loads(record.read_text())["checkpoint"]
    record.unlink()
    run_cli(
        "train", *study["overrides"], "head=maskiou", f"hydra.run.dir={root / 'again'}", env=env, cwd=root
    )
    assert f"ckpt_path=auto: resuming from {checkpoint}" in (record.parent / "run" / "train.log").read_text()
    assert json.loads(record.read_text())["checkpoint"] == checkpoint
    assert ckpt(checkpoint)["global_step"] == 8


def test_a_head_only_run_killed_after_an_epoch_resumes_to_the_uninterrupted_weights(study, env):
    """SIGKILL after the head's first epoch-end last.ckpt, then the same command: bit for bit the same."""
    root = study["root"]
    two_epochs = [o.replace("head_max_epochs=1", "head_max_epochs=2") for o in study["overrides"]]
    command = [*two_epochs, "head=maskiou", "ckpt_path=auto"]
    whole, killed = root / "whole", root / "killed"
    run_cli("train", *command, f"hydra.run.dir={whole}", env=env, cwd=root)
    last = killed / "checkpoints" / "last.ckpt"
    argv = [sys.executable, "-m", "msr.cli.train", *command, f"hydra.run.dir={killed}"]
    process = subprocess.Popen(argv, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not last.is_file():  # written atomically: once it is there, it is whole
        assert process.poll() is None, "the run ended before its first last.ckpt"
        assert time.monotonic() < deadline, "no last.ckpt after 300 s"
        time.sleep(0.02)
    process.kill()
    process.wait()
    assert ckpt(last)["global_step"] == 4 and "rng_states" in ckpt(last)  # the end of epoch 0 of 2
    run_cli("train", *command, f"hydra.run.dir={killed}", env=env, cwd=root)
    a, b = ckpt(whole / "checkpoints" / "last.ckpt"), ckpt(last)
    assert a["global_step"] == b["global_step"] == 8
    assert set(a["state_dict"]) == set(b["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    moments = [
        (s["exp_avg"], t["exp_avg"])
        for s, t in zip(
            a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()
        )
    ]
    assert moments and all(torch.equal(x, y) for x, y in moments)


@pytest.fixture(scope="module")
def refusals(env, tmp_path_factory) -> dict[str, dict]:
    """Return {case: {"rc", "stdout", "stderr"}} of head-only runs that must stop before any work, run by the
    real entry point in one process."""
    root = tmp_path_factory.mktemp("refusals")
    head_only = [*TINY, "schedule=cpu_tiny", "protocol=head_only"]
    cases = [
        train_case("no head", *head_only, "head=none", f"hydra.run.dir={root / 'no_head'}"),
        train_case("epochs", *head_only, "protocol.head_max_epochs=1", f"hydra.run.dir={root / 'epochs'}"),
        train_case(
            "no file",
            *head_only,
            f"protocol.trunk_weights={root / 'missing.pth'}",
            f"hydra.run.dir={root / 'no_file'}",
        ),
    ]
    return run_batch(cases, env, root)


def test_head_only_needs_a_head(refusals):
    case = refusals["no head"]
    assert case["rc"] == 2 and "protocol=head_only" in case["stderr"] and "head=none" in case["stderr"]


def test_a_shorter_head_schedule_needs_a_schedule_by_epochs(refusals):
    case = refusals["epochs"]
    assert case["rc"] == 2
    assert "protocol.head_max_epochs" in case["stderr"] and "max_steps=4" in case["stderr"]


def test_a_trunk_file_that_is_not_there_is_one_line(refusals):
    case = refusals["no file"]
    assert case["rc"] == 2 and "protocol.trunk_weights: file not found" in case["stderr"]
    assert "missing.pth" in case["stderr"] and "Traceback" not in case["stderr"]
