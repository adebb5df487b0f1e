"""RoIAlign over an FPN: torchvision's kernel against msr's sparse product, side by side in one process.

    python experiments/benchmarks/roi_align_speed.py [--iters 10] [--json out.json]

For each case (the quickstart's box and mask pools at 128 px, and the same pools of an R-50 FPN at
800x1088, where a CPU user pools far larger maps), both poolers see the same features and boxes and are
timed alternately, iteration by iteration: the training forward alone and forward + backward (inference,
under no_grad, runs torchvision's kernel in both).
Prints the medians, their ratio (torchvision / sparse: > 1 means the sparse one is faster) and the
largest difference of their outputs and gradients. Timings on a shared machine are noisy; the ratios
come from one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torchvision.ops import MultiScaleRoIAlign

from msr.files import write_json_atomic
from msr.models.roi_align import SparseMultiScaleRoIAlign

#: name -> (images, channels, image height, image width, boxes per image, output size)
CASES = {
    "quickstart box pool (128 px, 64 ch, 4 x 128 boxes, 7x7)": (4, 64, 128, 128, 128, 7),
    "quickstart mask pool (128 px, 64 ch, 4 x 32 boxes, 14x14)": (4, 64, 128, 128, 32, 14),
    "R-50 FPN box pool (800x1088, 256 ch, 2 x 512 boxes, 7x7)": (2, 256, 800, 1088, 512, 7),
    "R-50 FPN mask pool (800x1088, 256 ch, 2 x 64 boxes, 14x14)": (2, 256, 800, 1088, 64, 14),
}


def inputs(images: int, channels: int, height: int, width: int, boxes: int, seed: int = 0):
    """Return (P2-P5 features requiring grad, per-image boxes): boxes of 4-50 % of the picture's side."""
    gen = torch.Generator().manual_seed(seed)
    features = OrderedDict(
        (
            str(level),
            torch.randn(images, channels, height >> (level + 2), width >> (level + 2), generator=gen),
        )
        for level in range(4)
    )
    side = torch.tensor([width, height], dtype=torch.float32)
    per_image = []
    for _ in range(images):
        size = (0.04 + 0.46 * torch.rand(boxes, 2, generator=gen)) * side
        corner = torch.rand(boxes, 2, generator=gen) * (side - size)
        per_image.append(torch.cat([corner, corner + size], dim=1))
    return features, per_image


def timed(fn, name: str) -> float:
    """Return the seconds one call of fn(name) takes."""
    start = time.perf_counter()
    fn(name)
    return time.perf_counter() - start


def compare(case: tuple[int, ...], iters: int) -> dict:
    """Return the medians (ms) of both poolers, forward and forward+backward, their ratios and differences."""
    images, channels, height, width, boxes, size = case
    features, per_image = inputs(images, channels, height, width, boxes)
    shapes = [(height, width)] * images
    poolers = {
        "torchvision": MultiScaleRoIAlign(list(features), size, 2),
        "sparse": SparseMultiScaleRoIAlign(list(features), size, 2),
    }
    leaves = {
        name: OrderedDict((k, v.clone().requires_grad_()) for k, v in features.items()) for name in poolers
    }
    upstream = None
    outputs = {}

    def forward(name: str) -> None:  # a training forward: inference takes torchvision's kernel in both
        poolers[name](leaves[name], per_image, shapes)

    def train(name: str) -> None:
        nonlocal upstream
        pooled = poolers[name](leaves[name], per_image, shapes)
        if upstream is None:
            upstream = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(pooled, list(leaves[name].values()), upstream)
        outputs[name] = (pooled.detach(), grads)

    times = {f"{name} {kind}": [] for name in poolers for kind in ("forward", "forward+backward")}
    for name in poolers:  # warm-up
        train(name)
        forward(name)
    for _ in range(iters):
        for name in poolers:
            times[f"{name} forward"].append(timed(forward, name))
            times[f"{name} forward+backward"].append(timed(train, name))
    medians = {key: 1000 * statistics.median(values) for key, values in times.items()}
    (ours, our_grads), (theirs, their_grads) = outputs["sparse"], outputs["torchvision"]
    return {
        "ms": medians,
        "ratio_forward": medians["torchvision forward"] / medians["sparse forward"],
        "ratio_forward_backward": medians["torchvision forward+backward"]
        / medians["sparse forward+backward"],
        "max_abs_diff_output": float((ours - theirs).abs().max()),
        "max_rel_diff_grad": max(
            float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
            for a, b in zip(our_grads, their_grads)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {name: compare(case, args.iters) for name, case in CASES.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.iters} alternated iterations"
    )
    print("| case | torchvision fwd / fwd+bwd (ms) | sparse fwd / fwd+bwd (ms) | ratio fwd | ratio fwd+bwd |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        ms = r["ms"]
        print(
            f"| {name} | {ms['torchvision forward']:.1f} / {ms['torchvision forward+backward']:.1f} "
            f"| {ms['sparse forward']:.1f} / {ms['sparse forward+backward']:.1f} "
            f"| {r['ratio_forward']:.2f}x | {r['ratio_forward_backward']:.2f}x |"
        )
    worst_output = max(r["max_abs_diff_output"] for r in results.values())
    worst_grad = max(r["max_rel_diff_grad"] for r in results.values())
    print(
        f"largest output difference {worst_output:.2e}; "
        f"largest gradient difference {worst_grad:.2e} of the gradient's scale"
    )
    summary = {name: round(r["ratio_forward_backward"], 3) for name, r in results.items()}
    print(json.dumps({"ratio_forward_backward": summary}))
    if args.json is not None:
        write_json_atomic(
            {"iters": args.iters, "threads": torch.get_num_threads(), "cases": results}, args.json, indent=1
        )


if __name__ == "__main__":
    main()
