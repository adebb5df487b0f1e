"""The mask path, 28x28 probabilities to COCO RLE: today's full-image paste against box crops, side by side.

    python experiments/benchmarks/mask_path_speed.py [--pictures 6] [--json out.json]

Every picture (800x1333, 100 detections: boxes of 8-600 px, many at the border, 28x28 probabilities of a
soft blob with noise, as a mask head gives) goes through both paths on the same inputs, alternately:

- old: torchvision's `paste_masks_in_image` (one [H, W] float mask per detection), `>= 0.5`, then
  `encode_masks` on the full-image masks (what `predictions_to_coco` did with a model's output);
- new: `paste_box_masks` (the same resize per mask, cut at 0.5 inside the box) and `encode_box_masks`
  (RLE from the crops), and, for information, the batched resize meant for a GPU, run here on the CPU.

Prints the median time per picture of paste and of threshold + encode, their ratio old / new, and the
peak memory of a 2-picture batch's post-processing (RSS above the level before it, each path measured
on its own), and checks that both paths give the same RLEs. Timings on a shared machine are noisy; the
ratios come from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import PeakRSS, memory, release_freed_memory, write_figures  # beside this script
from torchvision.models.detection.roi_heads import paste_masks_in_image

from msr.data.segmentation import encode_masks
from msr.evaluation.masks import encode_box_masks
from msr.models.mask_paste import paste_box_masks

TARGETS = {"paste_threshold_encode_ratio": 5.0, "peak_memory_fraction": 0.25}


def detections(gen: torch.Generator, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (probs [n, 1, 28, 28], boxes [n, 4] xyxy clipped to the picture) like a mask head's."""
    side = torch.exp(torch.empty(n, 2).uniform_(2.0, 6.4, generator=gen))  # 7 to 600 px
    corner = torch.rand(n, 2, generator=gen) * torch.tensor([width, height], dtype=torch.float32) - side / 4
    boxes = torch.cat([corner, corner + side], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    grid = (torch.arange(28, dtype=torch.float32) + 0.5) / 14 - 1  # [-1, 1]
    radius = torch.empty(n, 2).uniform_(0.4, 1.0, generator=gen)
    rows = (grid[None, :, None] / radius[:, 1, None, None]) ** 2
    shape = rows + (grid[None, None, :] / radius[:, 0, None, None]) ** 2
    logits = 4 * (1 - shape) + torch.randn(n, 28, 28, generator=gen)
    return logits.sigmoid()[:, None], boxes


def old_path(probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> tuple[list, float, float]:
    """Return (RLEs, paste s, threshold + encode s) of today's path for one picture."""
    start = time.perf_counter()
    masks = paste_masks_in_image(probs, boxes, size)
    pasted = time.perf_counter()
    rles = encode_masks(masks[:, 0] >= 0.5)
    return rles, pasted - start, time.perf_counter() - pasted


def new_path(
    probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], batched: bool = False
) -> tuple[list, float, float]:
    """Return (RLEs, paste + threshold s, encode s) of the box-crop path for one picture."""
    start = time.perf_counter()
    masks = paste_box_masks(probs, boxes, size, batched=batched)
    pasted = time.perf_counter()
    rles = encode_box_masks(masks)
    return rles, pasted - start, time.perf_counter() - pasted


def batch_peak_mb(path: str, inputs: list[tuple[torch.Tensor, torch.Tensor]], size: tuple[int, int]) -> float:
    """Return the peak RSS above the level before it (MB) of post-processing a batch of pictures: the
    masks of the whole batch exist at once, as a detector's post-processing gives them."""
    release_freed_memory()
    before = memory()["rss_mb"]
    with PeakRSS() as peak:
        if path == "old":
            masks = [paste_masks_in_image(p, b, size) for p, b in inputs]
            rles = [encode_masks(m[:, 0] >= 0.5) for m in masks]
        else:
            masks = [paste_box_masks(p, b, size) for p, b in inputs]
            rles = [encode_box_masks(m) for m in masks]
        del masks, rles
    return peak.peak_mb - before


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, time both paths, print the table and write --json; return the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pictures", type=int, default=6)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the evaluator's update runs in one thread per rank
    gen = torch.Generator().manual_seed(args.seed)
    size = (args.height, args.width)
    inputs = [detections(gen, args.detections, *size) for _ in range(args.pictures)]
    times: dict[str, list[float]] = {k: [] for k in ("old_paste", "old_encode", "new_paste", "new_encode")}
    times.update(batched_paste=[], batched_encode=[])
    same, batched_differing = True, 0
    for probs, boxes in inputs:
        old, paste, encode = old_path(probs, boxes, size)
        times["old_paste"].append(paste)
        times["old_encode"].append(encode)
        new, paste, encode = new_path(probs, boxes, size)
        times["new_paste"].append(paste)
        times["new_encode"].append(encode)
        batched, paste, encode = new_path(probs, boxes, size, batched=True)
        times["batched_paste"].append(paste)
        times["batched_encode"].append(encode)
        same &= new == old
        batched_differing += sum(a != b for a, b in zip(batched, old))
    median = {k: statistics.median(v) for k, v in times.items()}
    old_total = median["old_paste"] + median["old_encode"]
    new_total = median["new_paste"] + median["new_encode"]
    batch = inputs[:2]
    peak = {"new": batch_peak_mb("new", batch, size), "old": batch_peak_mb("old", batch, size)}
    figures = {
        "pictures": args.pictures,
        "detections": args.detections,
        "size": list(size),
        "median_s": {k: round(v, 5) for k, v in median.items()},
        "paste_ratio": round(median["old_paste"] / median["new_paste"], 2),
        "threshold_encode_ratio": round(median["old_encode"] / median["new_encode"], 2),
        "paste_threshold_encode_ratio": round(old_total / new_total, 2),
        "batched_cpu_ratio": round(old_total / (median["batched_paste"] + median["batched_encode"]), 2),
        "batch_of_2_peak_mb": {k: round(v, 1) for k, v in peak.items()},
        "peak_memory_fraction": round(peak["new"] / max(peak["old"], 1e-9), 4),
        "same_rles": same,
        "batched_differing_masks": batched_differing,
        "targets": TARGETS,
    }
    write_figures(args.json, figures)
    print(table(figures))
    if not same:
        print("mask_path_speed: the box-crop path gave other RLEs than today's path", file=sys.stderr)
    return figures


def table(figures: dict[str, Any]) -> str:
    """Return the Markdown table of the figures."""
    m = figures["median_s"]
    h, w = figures["size"]
    lines = [
        f"Mask path, {figures['pictures']} pictures of {h}x{w}, {figures['detections']} detections each "
        "(median s per picture, one thread)",
        "",
        "| step | today (full-image paste) | box crops | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| paste (+ threshold for crops) | {m['old_paste']:.4f} | {m['new_paste']:.4f} | "
        f"{figures['paste_ratio']} | |",
        f"| threshold + RLE encode | {m['old_encode']:.4f} | {m['new_encode']:.4f} | "
        f"{figures['threshold_encode_ratio']} | |",
        f"| paste + threshold + encode | {m['old_paste'] + m['old_encode']:.4f} | "
        f"{m['new_paste'] + m['new_encode']:.4f} | {figures['paste_threshold_encode_ratio']} | >= 5 |",
        f"| peak memory of a 2-picture batch (MB) | {figures['batch_of_2_peak_mb']['old']} | "
        f"{figures['batch_of_2_peak_mb']['new']} | {figures['peak_memory_fraction']} | <= 0.25 |",
        "",
        f"same RLEs as today: {figures['same_rles']}; batched resize (GPU path, on this CPU): "
        f"{figures['batched_cpu_ratio']}x today, masks whose RLE differs (pixels within 2e-6 of 0.5): "
        f"{figures['batched_differing_masks']} of {figures['pictures'] * figures['detections']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
