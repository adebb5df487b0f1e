"""Cross-rank gathering: real 2-process gloo equals 1 process, with DistributedSampler padding dropped."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.env import subprocess_env
from support.paths import TESTS

from msr.distributed import broadcast_object, dedupe_by_image, gather_results, get_rank, get_world_size
from msr.evaluation.coco_eval import evaluate_coco
from msr.evaluation.evaluator import COCOEvaluator

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def differences(a: dict, b: dict) -> dict:
    """Return {key: (a value, b value)} where two metric dicts differ (NaN equals NaN)."""
    return {
        k: (a.get(k), b.get(k))
        for k in a.keys() | b.keys()
        if k not in a or k not in b or not (a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])))
    }


def free_port() -> int:
    """Return a TCP port on localhost that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(ann_file: Path, outs: list[Path], *extra: str) -> tuple[list[int], str]:
    """Run one ddp_worker.py process per path in `outs`; return their exit codes and joint output.

    Retries on a fresh port when the free port was taken before rank 0 could bind it.
    """
    for _attempt in range(3):
        codes, log = _run_workers_once(free_port(), ann_file, outs, *extra)
        if "address already in use" not in log.lower():
            break
    return codes, log


def _run_workers_once(port: int, ann_file: Path, outs: list[Path], *extra: str) -> tuple[list[int], str]:
    """Run the workers once on `port`; return their exit codes and joint output."""
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(WORKER.parent), str(TESTS)]))
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(r), str(len(outs)), str(port), str(ann_file), str(out), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r, out in enumerate(outs)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("gloo workers timed out")
    return [p.returncode for p in procs], "\n".join(logs)


def test_dedupe_keeps_first_rank_per_image():
    r = lambda image_id, tag: {"image_id": image_id, "tag": tag}  # noqa: E731
    rank0 = ([r(1, "a"), r(1, "b"), r(3, "c")], [1, 3, 5])  # image 5: evaluated, no detection
    rank1 = ([r(2, "d"), r(1, "dup")], [2, 1])  # image 1 padded in again
    results, ids = dedupe_by_image([rank0, rank1])
    assert ids == [1, 2, 3, 5]
    assert sorted(x["tag"] for x in results) == ["a", "b", "c", "d"]


def test_not_distributed_is_a_local_noop():
    results = [{"image_id": 4, "score": 1.0}]
    assert gather_results(results, [4, 9]) == (results, [4, 9])
    assert broadcast_object({"x": 1}) == {"x": 1}


def test_two_gloo_processes_equal_one_process(tiny_gt, synth, tmp_path):
    ann_file, dataset = tiny_gt
    assert len(dataset["images"]) % 2 == 1  # odd: the sampler pads rank 1 with a repeat of image 0

    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    codes, log = run_workers(ann_file, outs)
    assert codes == [0, 0], log
    ranks = [json.loads(o.read_text()) for o in outs]

    # the sampler really padded: one image was evaluated on both ranks
    seen = ranks[0]["images"] + ranks[1]["images"]
    assert len(seen) == len(dataset["images"]) + 1 and len(set(seen)) == len(dataset["images"])

    # one process, every image once
    evaluator = COCOEvaluator(upper_bound=True).bind(ann_file, synth.CAT_IDS)
    outputs = synth.noisy_outputs(dataset)
    for image_id, out in outputs.items():
        evaluator.update([out], [image_id])
    single = evaluator.compute().metrics

    assert differences(ranks[0]["metrics"], single) == {}  # exactly, every key
    assert differences(ranks[1]["metrics"], single) == {}  # broadcast to every rank
    assert {"bbox/AP", "segm/AP", "calib/pearson_pred_iou", "segm_upper_bound/AP"} <= single.keys()
    # results, image ids and calibration arrays stay on rank 0
    assert [r["has_results"] for r in ranks] == [[True] * 3, [False] * 3]

    # keeping the padded duplicate would have changed the numbers: the dedupe matters
    dup = seen[-1]
    with_dup = evaluator.local_results("segm") + [
        r for r in evaluator.local_results("segm") if r["image_id"] == dup
    ]
    assert evaluate_coco(with_dup, ann_file, "segm")["segm/AP"] != single["segm/AP"]


def test_error_on_rank_zero_reaches_every_rank(tiny_gt, tmp_path):
    ann_file, _ = tiny_gt
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    codes, log = run_workers(ann_file, outs, str(tmp_path / "missing.json"))
    assert codes == [0, 0], log  # nobody hung or crashed: both ranks caught an error
    errors = [json.loads(o.read_text())["error"] for o in outs]
    assert errors[0].startswith("EvaluationError: annotation file not found")
    assert errors[1].startswith("RuntimeError: COCO evaluation failed on rank 0: EvaluationError: annotation")


def test_rank_without_a_process_group_comes_from_the_launcher(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert get_rank() == 0 and get_world_size() == 1
    monkeypatch.setenv("JSM_NAMESPACE_RANK", "4")
    assert get_rank() == 4
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert get_rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert get_rank() == 2
    monkeypatch.setenv("RANK", "1")  # the first set variable of RANK, LOCAL_RANK, SLURM_PROCID, JSM wins
    assert get_rank() == 1
    assert get_world_size() == 1  # the world size is torch.distributed's alone
