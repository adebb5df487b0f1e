"""The paired head-only protocol through the real CLI: one trunk per seed, trained once and cached; every
head variant trains only its head on it, so all variants score the very same boxes and masks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "entry"))
from entry_cli import TINY, run_batch, run_cli, train_case

from msr.studies.intervals import read_trunk
from msr.training.tracking import git_commit


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "MSR_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
            "HYDRA_FULL_ERROR": "0"}


def detections(job: Path) -> list[tuple]:
    """Return each segm detection's picture, class, mask and class score (what the trunk decides)."""
    segm = json.loads((job / "eval" / "segm_results.json").read_text())
    return [(r["image_id"], r["category_id"], r["segmentation"]["counts"], r["class_score"]) for r in segm]


def test_head_variants_share_one_cached_trunk_and_score_the_same_masks(env, tmp_path):
    sweep, trunks = tmp_path / "sweep", tmp_path / "trunks"
    # The trunk trains 2 epochs (8 pictures at 2 a step: 8 steps), each head 1 (protocol.head_max_epochs).
    overrides = [*TINY, "schedule=cpu_quick", "schedule.max_epochs=2", "protocol=head_only",
                 f"protocol.trunk_cache={trunks}", "protocol.head_max_epochs=1"]
    run_cli(
        "train", "--multirun", *overrides, "head=maskiou,maskiou_multiply", f"hydra.sweep.dir={sweep}",
        env=env, cwd=tmp_path,
    )
    jobs = [sweep / "0", sweep / "1"]
    infos = [json.loads((job / "run_config.json").read_text())["config"]["protocol"]["trunk"] for job in jobs]
    assert infos[0] == infos[1]  # one trunk for the seed ...
    assert [p.name for p in trunks.iterdir() if p.is_dir()] == [infos[0]["key"]]  # ... trained once
    trunk = torch.load(infos[0]["checkpoint"], map_location="cpu", weights_only=True)
    assert trunk["global_step"] == 8 and not any("maskiou" in k for k in trunk["state_dict"])

    for job in jobs:
        state = torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert state["global_step"] == 4  # the head's own, shorter schedule on the full trunk
        assert json.loads((job / "run_config.json").read_text())["config"]["schedule"]["max_epochs"] == 1
        for key, value in trunk["state_dict"].items():  # weights and BatchNorm statistics untouched
            assert torch.equal(state["state_dict"][key], value), key
    first, second = detections(jobs[0]), detections(jobs[1])
    assert first and first == second  # the very same boxes and masks, ranked by different MaskIoU heads
    ious = [json.loads((job / "eval" / "segm_results.json").read_text())[0]["mask_iou"] for job in jobs]
    assert ious[0] != ious[1]

    # msr-aggregate pairs the trunk's own run (Mask R-CNN) with the head-only jobs as sharing that trunk.
    trunk_run = trunks / infos[0]["key"] / "run"
    assert [read_trunk(folder) for folder in (trunk_run, *jobs)] == [infos[0]["key"]] * 3

    log = (jobs[1] / "train.log").read_text()
    assert f"trunk {infos[0]['key']} from the cache" in log  # the second job found it trained
    assert "the head trains 1 epoch on the frozen trunk" in log

    # The cache records the code that trained the trunk, and a job of other code is told it reuses it.
    done = trunks / infos[0]["key"] / "trunk.json"
    record = json.loads(done.read_text())
    assert record["code"] == git_commit()
    done.write_text(json.dumps({**record, "code": {"commit": "0" * 40, "dirty": True}}))
    again = tmp_path / "again"
    run_cli("train", *overrides, "head=maskiou", f"hydra.run.dir={again}", env=env, cwd=tmp_path)
    warning = f"trunk {infos[0]['key']} was trained at commit {'0' * 40} (uncommitted changes), this checkout"
    assert warning in (again / "train.log").read_text()

    # A trunk whose training was stopped before it was recorded as done resumes from its last.ckpt.
    done.unlink()
    resumed = tmp_path / "resumed"
    run_cli("train", *overrides, "head=maskiou", f"hydra.run.dir={resumed}", env=env, cwd=tmp_path)
    trunk_log = (trunks / infos[0]["key"] / "run" / "train.log").read_text()
    assert f"ckpt_path=auto: resuming from {infos[0]['checkpoint']}" in trunk_log
    assert json.loads(done.read_text())["checkpoint"] == infos[0]["checkpoint"]
    after = torch.load(infos[0]["checkpoint"], map_location="cpu", weights_only=True)
    assert after["global_step"] == 8


@pytest.fixture(scope="module")
def refusals(env, tmp_path_factory) -> dict[str, dict]:
    """Return {case: {"rc", "stdout", "stderr"}} of head-only runs that must stop before any work (no head;
    a head schedule in epochs on a trunk schedule in steps), run by the real entry point in one process."""
    root = tmp_path_factory.mktemp("refusals")
    head_only = [*TINY, "schedule=cpu_tiny", "protocol=head_only"]
    cases = [
        train_case("no head", *head_only, "head=none", f"hydra.run.dir={root / 'no_head'}"),
        train_case("epochs", *head_only, "protocol.head_max_epochs=1", f"hydra.run.dir={root / 'epochs'}"),
    ]
    return run_batch(cases, env, root)


def test_head_only_needs_a_head(refusals):
    case = refusals["no head"]
    assert case["rc"] == 2 and "protocol=head_only" in case["stderr"] and "head=none" in case["stderr"]


def test_a_shorter_head_schedule_needs_a_schedule_by_epochs(refusals):
    case = refusals["epochs"]
    assert case["rc"] == 2
    assert "protocol.head_max_epochs" in case["stderr"] and "max_steps=4" in case["stderr"]
