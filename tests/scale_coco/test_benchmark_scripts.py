"""The COCO-scale benchmark scripts run (at toy sizes, not timed): the GPU benchmark's CPU smoke mode and
its one line without a GPU, the data benchmark's old-vs-new run, the 2-rank evaluation benchmark."""

from __future__ import annotations

import json

import coco_scale_data
import coco_scale_eval
import gpu
import mask_path_speed
import pytest
import torch

# pycocotools (decode) calls np.array(copy=False) on its own buffer: harmless under NumPy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_gpu_benchmark_without_a_gpu_says_so_in_one_line(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--json", str(tmp_path / "gpu.json")]) == 0
    assert capsys.readouterr().out.strip() == gpu.NO_GPU
    assert json.loads((tmp_path / "gpu.json").read_text()) == {"skipped": gpu.NO_GPU}


@pytest.mark.slow
def test_gpu_benchmark_runs_on_cpu_in_tiny_mode(tmp_path) -> None:
    out, md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    # fp32 only: bf16 on a CPU without native bf16 is emulated (minutes even at this size); the
    # bf16-mixed training path is tested in tests/scale/test_sweeps_and_precision.py
    argv = ["--device", "cpu", "--tiny", "--precisions", "32-true", "--batches", "1", "2"]
    assert gpu.main([*argv, "--json", str(out), "--markdown", str(md)]) == 0
    figures = json.loads(out.read_text())
    row = figures["precisions"]["32-true"]
    for batch in ("1", "2"):
        assert row["train"][batch]["images_per_s"] > 0 and row["train"][batch]["finite"] is True
    assert row["inference"]["images_per_s"] > 0
    overhead = figures["maskiou_overhead"]
    assert overhead["train_ratio"] > 0 and overhead["infer_ratio"] > 0
    assert "| 32-true | 2 |" in md.read_text()


@pytest.mark.slow
def test_data_benchmark_compares_old_and_new_storage(tmp_path) -> None:
    figures = coco_scale_data.main(
        ["--images", "300", "--workers", "2", "--chunk", "64", "--cache-dir", str(tmp_path)]
    )
    old, new = figures["variants"]["old"], figures["variants"]["new"]
    assert old["images"] == new["images"] > 0 and old["instances"] == new["instances"] > 0
    assert old["stats"] == new["stats"] and len(new["worker_growth_mb"]) == 2 and new["store_mb"] >= 0


@pytest.mark.slow
def test_eval_benchmark_runs_two_gloo_ranks(tmp_path) -> None:
    figures = coco_scale_eval.main(["--images", "6", "--masks", "both", "--cache-dir", str(tmp_path)])
    rank0, rank1 = figures["ranks"]
    assert rank0["images"] + rank1["images"] == 6
    assert rank0["same_results"] and rank1["same_results"]  # box masks and full-image masks alike
    assert rank0["update_cpu_ratio"] > 0 and rank0["update_peak_rss_mb"] > 0
    assert rank0["max_rss_mb"] >= rank0["default_peak_rss_mb"] > 0
    assert rank0["detections"] == 100 * rank0["images"]
    assert rank0["default_metrics"] == rank1["default_metrics"]  # broadcast to every rank
    assert "segm_upper_bound/AP" in rank0["upper_bound_metrics"]


@pytest.mark.slow
def test_head_step_benchmark_times_full_and_shared_head_steps(tmp_path) -> None:
    import head_step_cost

    argv = [
        "--backbone",
        "resnet18",
        "--height",
        "96",
        "--width",
        "128",
        "--num-classes",
        "4",
        "--instances",
        "2",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--json",
        str(tmp_path / "steps.json"),
    ]
    figures = head_step_cost.main(argv)
    assert set(figures["seconds"]) == {"full", "head x1", "head x4"}
    assert all(s > 0 for s in figures["seconds"].values())
    assert figures["per_variant_of_4_over_full"] == pytest.approx(figures["head_x4_over_full"] / 4)
    assert json.loads((tmp_path / "steps.json").read_text())["seconds"] == figures["seconds"]


def test_mask_path_benchmark_compares_both_paths_on_the_same_inputs(tmp_path) -> None:
    argv = ["--pictures", "2", "--detections", "12", "--height", "60", "--width", "90"]
    figures = mask_path_speed.main([*argv, "--json", str(tmp_path / "mask.json")])
    assert figures["same_rles"] is True
    assert figures["paste_threshold_encode_ratio"] > 0 and figures["batch_of_2_peak_mb"]["old"] >= 0
