"""Benchmark: COCO evaluation at val size, 5,000 pictures x 100 detections with RLE masks, 2 gloo ranks.

Two real torch.distributed processes (gloo on this machine) each take their DistributedSampler share
of the COCO-like val set (`msr.data.coco_like`, 5,000 pictures, ~36.6k instances) and feed msr's
`COCOEvaluator` one picture at a time, as a validation loop does: 100 detections a picture, jittered
copies of its instances (a model's masks, RLE-encoded by `update`: by default as msr's evaluation gives
them, BoxMasks cut to their boxes; `--masks dense`: [100, H, W] at the picture's size, as before issue
30; `--masks both`: the same detections go to a second evaluator as full-image masks, `update` is timed
for each and their segm results are compared), with box scores, predicted IoUs and mask scores as
MS R-CNN gives them. Making the detections is timed apart from `update`. Then, timed:

- `compute()` with bbox + segm + calibration (faster-coco-eval), the default of a validation;
- `compute()` over the same results with `upper_bound=True` too (two more COCOeval passes: the
  true-IoU upper bound and the class-score ranking), without the bootstrap interval of the rescoring
  gain; with `--bootstrap N`, a third run with N replicates of that interval (the config's default is
  1000: about 0.4 s a picture on this machine, so not in `make bench`).

Each rank reports its wall and CPU time of `update` (all its pictures; CPU time is less disturbed by
other work on the machine) and of each `compute`, its RSS before the gather (its own share only), its
peak RSS during each `compute` (the kernel's high-water mark, reset before it), its peak RSS while
making the detections and updating (the high-water mark before the first reset: the benchmark's own
[100, H, W] masks of each picture included, and the heap malloc keeps after freeing them) and the
largest of them, the peak of the whole rank.

    python experiments/benchmarks/coco_scale_eval.py                    # ~5 min on 2 CPU cores
    python experiments/benchmarks/coco_scale_eval.py --images 1000 --json out.json

Targets (issue 16): bbox + segm + calibration <= 120 s, peak memory of rank 0 <= 4 GB.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import MB, PeakRSS, memory, release_freed_memory, write_figures  # beside this script

TARGETS = {"compute_s": 120.0, "peak_rss_mb": 4096.0}
DETECTIONS = 100


def detections(rng: np.random.Generator, image: dict, anns: list[dict], label_of: dict[int, int]) -> dict:
    """Return a model's output for one picture: DETECTIONS jittered copies of its polygon instances.

    `boxes` [D, 4] xyxy, `labels`, `scores`, `mask_ious`, `mask_scores` [D] and `masks` [D, H, W] bool.
    """
    import pycocotools.mask as mask_utils
    import torch

    h, w = image["height"], image["width"]
    sources = [a for a in anns if not a["iscrowd"]]
    polygons, labels = [], []
    for d in range(DETECTIONS):
        if sources and d < 4 * len(sources):  # near each instance, then false positives elsewhere
            ann = sources[d % len(sources)]
            points = np.asarray(ann["segmentation"][0], dtype=np.float64).reshape(-1, 2)
            label = (
                label_of[ann["category_id"]]
                if rng.random() > 0.2
                else int(rng.integers(1, len(label_of) + 1))
            )
        else:
            centre, radius = rng.uniform([0, 0], [w, h]), rng.uniform(4, min(h, w) / 4)
            angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            points = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            label = int(rng.integers(1, len(label_of) + 1))
        centre = points.mean(axis=0)
        spread = 0.05 + 0.3 * d / DETECTIONS
        size = np.ptp(points, axis=0) + 1
        points = (
            (points - centre) * rng.uniform(1 - spread, 1 + spread) + centre + rng.normal(0, spread) * size
        )
        polygons.append(np.clip(points, 0, [w, h]).ravel().tolist())
        labels.append(label)
    rles = [mask_utils.merge(mask_utils.frPyObjects([p], h, w)) for p in polygons]
    masks = torch.from_numpy(mask_utils.decode(rles).view(np.bool_)).permute(2, 0, 1)  # [D, H, W] of 0/1
    boxes = torch.tensor(mask_utils.toBbox(rles), dtype=torch.float32)
    boxes[:, 2:] += boxes[:, :2]
    scores = torch.from_numpy(rng.uniform(0.05, 1.0, DETECTIONS)).float().sort(descending=True).values
    mask_ious = torch.from_numpy(rng.uniform(0.2, 1.0, DETECTIONS)).float()
    return {
        "boxes": boxes,
        "labels": torch.tensor(labels),
        "scores": scores,
        "masks": masks,
        "mask_ious": mask_ious,
        "mask_scores": scores * mask_ious,
    }


def box_masks(masks: Any, boxes: Any) -> Any:
    """Return the [D, H, W] bool `masks` as BoxMasks cut to their `boxes` [D, 4] (whole pixels around
    them): what a detector's box-mask output gives the evaluator."""
    import torch

    from msr.models.mask_paste import BoxMasks

    h, w = masks.shape[-2:]
    regions = torch.cat([boxes[:, :2].floor(), boxes[:, 2:].ceil()], 1).to(torch.int64)
    regions[:, 0::2] = regions[:, 0::2].clamp(0, w)
    regions[:, 1::2] = regions[:, 1::2].clamp(0, h)
    crops = [m[y0:y1, x0:x1].reshape(-1) for m, (x0, y0, x1, y1) in zip(masks, regions.tolist())]
    return BoxMasks(torch.cat(crops), regions, (h, w))


def rank_main(args: argparse.Namespace) -> None:
    """Run one rank: update its share, compute twice, write its figures to `args.out`."""
    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    from msr.evaluation.evaluator import COCOEvaluator

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    dist.init_process_group("gloo", rank=args.rank, world_size=2, timeout=datetime.timedelta(minutes=30))
    with open(args.ann) as f:
        data = json.load(f)
    cat_ids = sorted(c["id"] for c in data["categories"])
    label_of = {c: i + 1 for i, c in enumerate(cat_ids)}
    anns: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        anns.setdefault(ann["image_id"], []).append(ann)
    images = data["images"]
    del data
    evaluator = COCOEvaluator(calibration=True, upper_bound=False).bind(args.ann, cat_ids)
    dense_evaluator = COCOEvaluator(calibration=True, upper_bound=False).bind(args.ann, cat_ids)
    spent = dict.fromkeys(("generate", "update", "update_dense", "update_cpu", "update_dense_cpu"), 0.0)
    for index in DistributedSampler(range(len(images)), num_replicas=2, rank=args.rank, shuffle=False):
        image = images[index]
        start = time.perf_counter()
        rng = np.random.default_rng([args.seed, image["id"]])
        output = detections(rng, image, anns.get(image["id"], []), label_of)
        cropped = {**output, "masks": box_masks(output["masks"], output["boxes"])}
        spent["generate"] += time.perf_counter() - start
        if args.masks in ("dense", "both"):
            start, cpu = time.perf_counter(), time.process_time()
            (evaluator if args.masks == "dense" else dense_evaluator).update([output], [image["id"]])
            spent["update_dense"] += time.perf_counter() - start
            spent["update_dense_cpu"] += time.process_time() - cpu
        if args.masks in ("crops", "both"):
            start, cpu = time.perf_counter(), time.process_time()
            evaluator.update([cropped], [image["id"]])
            spent["update"] += time.perf_counter() - start
            spent["update_cpu"] += time.process_time() - cpu
    figures: dict[str, Any] = {"masks": args.masks, "generate_s": round(spent["generate"], 1)}
    for name in ("update", "update_dense"):
        if spent[name] > 0:
            figures[f"{name}_s"] = round(spent[name], 1)
            figures[f"{name}_cpu_s"] = round(spent[f"{name}_cpu"], 1)
    if args.masks == "both":
        figures["update_ratio"] = round(spent["update_dense"] / max(spent["update"], 1e-9), 2)
        figures["update_cpu_ratio"] = round(spent["update_dense_cpu"] / max(spent["update_cpu"], 1e-9), 2)
        figures["same_results"] = dense_evaluator.local_results("segm") == evaluator.local_results("segm")
    del dense_evaluator
    figures["update_peak_rss_mb"] = round(high_water_mb())  # before PeakRSS resets the mark
    figures["images"] = evaluator.num_images
    figures["detections"] = len(evaluator.local_results("segm"))
    runs = {"default": {}, "upper_bound": {"upper_bound": True, "bootstrap": 0}}
    if args.bootstrap > 0:
        runs["upper_bound_bootstrap"] = {"upper_bound": True, "bootstrap": args.bootstrap}
    for name, options in runs.items():
        current = copy.copy(evaluator)  # the same collected results, a fresh ground truth
        for key, value in options.items():
            if hasattr(current, key):  # `bootstrap`: the evaluators of issue 14 on
                setattr(current, key, value)
        release_freed_memory()
        dist.barrier()
        figures[f"{name}_rss_before_mb"] = round(memory()["rss_mb"])
        with PeakRSS() as peak:
            start, cpu = time.perf_counter(), time.process_time()
            metrics = current.compute().metrics
            figures[f"{name}_compute_s"] = round(time.perf_counter() - start, 1)
            figures[f"{name}_compute_cpu_s"] = round(time.process_time() - cpu, 1)
        figures[f"{name}_peak_rss_mb"] = round(peak.peak_mb)
        figures[f"{name}_metrics"] = {k: v for k, v in metrics.items() if "/AP-" not in k}
        del current  # its ground truth and results go before the next run
    dist.destroy_process_group()
    figures["max_rss_mb"] = max(figures[k] for k in figures if k.endswith("peak_rss_mb"))
    Path(args.out).write_text(json.dumps(figures))


def high_water_mb() -> float:
    """Return this process's peak RSS so far (VmHWM, MB): since it started or since a PeakRSS reset it."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024 / MB


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(ann: Path, seed: int, bootstrap: int, masks: str = "crops") -> list[dict[str, Any]]:
    """Start the 2 ranks, wait for them and return their figures (rank order)."""
    port, folder = free_port(), Path(tempfile.mkdtemp(prefix="coco_scale_eval_"))
    procs = []
    for rank in range(2):
        command = [sys.executable, __file__, "--rank", str(rank), "--port", str(port), "--ann", str(ann)]
        command += [
            "--masks",
            masks,
            "--seed",
            str(seed),
            "--bootstrap",
            str(bootstrap),
            "--out",
            str(folder / f"rank{rank}.json"),
        ]
        procs.append(subprocess.Popen(command, stderr=subprocess.PIPE, text=True))
    errors = [p.communicate()[1] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"coco_scale_eval: a rank failed:\n{errors[0][-3000:]}\n{errors[1][-3000:]}")
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]


def table(figures: dict[str, Any]) -> str:
    """Return the Markdown table of both ranks' figures, with the targets."""
    ranks = figures["ranks"]
    rows = [
        ("pictures / detections held before the gather", lambda r: f"{r['images']} / {r['detections']}", ""),
        ("making the detections, all its pictures (s)", lambda r: r["generate_s"], ""),
    ]
    if "update_s" in ranks[0]:
        rows.append(("update from box masks, all its pictures (s)", lambda r: r["update_s"], ""))
    if "update_dense_s" in ranks[0]:
        rows.append(("update from full-image masks (s)", lambda r: r["update_dense_s"], ""))
    if "update_ratio" in ranks[0]:
        rows.append(("update: full-image / box masks", lambda r: r["update_ratio"], ">= 4"))
        rows.append(("... in CPU time", lambda r: r["update_cpu_ratio"], ""))
        rows.append(("... same segm results", lambda r: r["same_results"], ""))
    titles = {
        "default": ("bbox + segm + calibration", "<= 120"),
        "upper_bound": ("+ upper bound, no bootstrap", ""),
        "upper_bound_bootstrap": (f"+ upper bound, {figures['bootstrap']} bootstrap replicates", ""),
    }
    for name, (title, target) in titles.items():
        if f"{name}_compute_s" not in ranks[0]:
            continue
        rows += [
            (f"compute, {title}: wall (s)", lambda r, n=name: r[f"{n}_compute_s"], target),
            ("... its CPU time (s)", lambda r, n=name: r[f"{n}_compute_cpu_s"], ""),
            ("... RSS before it (MB)", lambda r, n=name: r[f"{n}_rss_before_mb"], ""),
            ("... peak RSS during it (MB)", lambda r, n=name: r[f"{n}_peak_rss_mb"], "<= 4096"),
        ]
    rows += [
        ("peak RSS while making the detections and updating (MB)", lambda r: r["update_peak_rss_mb"], ""),
        ("peak RSS of the rank, whole run (MB; its detections included)", lambda r: r["max_rss_mb"], ""),
    ]
    lines = [
        f"COCO-scale evaluation: {figures['images']} pictures x {DETECTIONS} detections, 2 gloo ranks",
        "",
        "| figure | rank 0 | rank 1 | target |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {title} | {get(ranks[0])} | {get(ranks[1])} | {target} |" for title, get, target in rows]
    metrics = ranks[0]["default_metrics"]
    lines += ["", f"segm AP {metrics['segm/AP']:.4f}, bbox AP {metrics['bbox/AP']:.4f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the ranks, print the table and write --json; return the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=5_000, help="pictures of the val split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="replicates of a third run (upper bound + interval; 0: none)",
    )
    parser.add_argument(
        "--masks",
        choices=("crops", "dense", "both"),
        default="crops",
        help="what update gets: box masks (as msr's evaluation gives them), full-image masks, or both "
        "side by side (the same detections to two evaluators, timed apart, results compared)",
    )
    parser.add_argument("--cache-dir", help="where the generated files go (default: the msr cache)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    for hidden in ("--rank", "--port"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ann", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank is not None:
        rank_main(args)
        return {}

    from coco_like_files import cached_coco_like_layout

    root = cached_coco_like_layout(args.cache_dir, num_train=0, num_val=args.images)
    start = time.perf_counter()
    figures = {
        "images": args.images,
        "bootstrap": args.bootstrap,
        "masks": args.masks,
        "targets": TARGETS,
        "ranks": run_ranks(
            root / "annotations" / "instances_val2017.json", args.seed, args.bootstrap, args.masks
        ),
    }
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    write_figures(args.json, figures)
    print(table(figures))
    return figures


if __name__ == "__main__":
    main()
