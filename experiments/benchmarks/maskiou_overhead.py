"""Cost of the MaskIoU head: MS R-CNN vs Mask R-CNN, timed side by side in one process.

Both models share every weight (the baseline is loaded from the MS R-CNN state_dict), see the same
batch and the same RoI sampling seed, and are timed alternately, iteration by iteration, so machine
noise hits both alike. Inference uses box_score_thresh=0 so every image keeps the maximum of 100
detections: the worst case for the MaskIoU head (a random-init model would otherwise keep none).

    python experiments/benchmarks/maskiou_overhead.py                 # R-50 FPN, 800x1333, batch 2
    python experiments/benchmarks/maskiou_overhead.py --device cuda --iters 20
    python experiments/benchmarks/maskiou_overhead.py --json out.json

Targets (issue 2): training step <= 1.10x and inference <= 1.03x of Mask R-CNN.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from msr.models import ConcatMaskIoUHead, build_detector, build_resnet_fpn_backbone

#: Gradient-norm clip of the timed training steps: random weights under frozen BatchNorm diverge without it.
MAX_GRAD_NORM = 10.0


def make_batch(
    batch: int, height: int, width: int, instances: int, num_classes: int, device: str, seed: int = 0
):
    """Return (images, targets): random images with `instances` random rectangles each."""
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch):
        images.append(torch.rand(3, height, width, generator=gen).to(device))
        sizes = torch.randint(32, min(height, width) // 2, (instances, 2), generator=gen)
        x1 = (torch.rand(instances, generator=gen) * (width - sizes[:, 0])).floor()
        y1 = (torch.rand(instances, generator=gen) * (height - sizes[:, 1])).floor()
        boxes = torch.stack([x1, y1, x1 + sizes[:, 0], y1 + sizes[:, 1]], dim=1)
        masks = torch.zeros(instances, height, width, dtype=torch.uint8)
        for i, (a, b, c, d) in enumerate(boxes.long().tolist()):
            masks[i, b:d, a:c] = 1
        labels = torch.randint(1, num_classes, (instances,), generator=gen)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device), "masks": masks.to(device)})
    return images, targets


def make_model(args: argparse.Namespace, maskiou: bool):
    """Return MS R-CNN with the paper's head (maskiou=True) or Mask R-CNN on the chosen backbone."""
    return build_detector(
        args.num_classes,
        build_resnet_fpn_backbone(args.backbone),
        maskiou_head=ConcatMaskIoUHead if maskiou else None,
        min_size=args.height,
        max_size=args.width,
        box_score_thresh=0.0,
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_train_step(model, optimizer, images, targets, device: str, seed: int) -> float:
    """Return the wall time of one forward + backward + SGD step."""
    _sync(device)
    start = time.perf_counter()
    torch.manual_seed(seed)
    losses = model(images, targets)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    _sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def time_inference(model, images, device: str) -> tuple[float, int]:
    """Return (wall time of one inference pass, number of detections)."""
    _sync(device)
    start = time.perf_counter()
    out = model(images)
    _sync(device)
    return time.perf_counter() - start, sum(len(o["boxes"]) for o in out)


def _order(models: dict, iteration: int) -> list[str]:
    """Return the model names in the order to time them at `iteration` (alternating)."""
    names = list(models)
    return names if iteration % 2 == 0 else names[::-1]


def run(args: argparse.Namespace) -> dict:
    """Time both models and return the figures (seconds are medians over the timed iterations)."""
    torch.manual_seed(0)
    ms = make_model(args, maskiou=True).to(args.device)
    base = make_model(args, maskiou=False).to(args.device)
    base.load_state_dict(ms.state_dict(), strict=False)
    images, targets = make_batch(
        args.batch, args.height, args.width, args.instances, args.num_classes, args.device
    )
    models = {"mask_rcnn": base, "ms_rcnn": ms}
    optimizers = {
        k: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4) for k, m in models.items()
    }
    train = {k: [] for k in models}
    infer = {k: [] for k in models}
    detections = {k: [] for k in models}
    # Inference first, on the untrained (identical) weights: every image keeps its 100 detections.
    # Then training steps. The order of the two models alternates every iteration (ABBA) so that a
    # warm-cache or allocator advantage of the second model cancels out.
    for it in range(args.warmup + args.iters):
        for name in _order(models, it):
            models[name].eval()
            seconds, count = time_inference(models[name], images, args.device)
            if it >= args.warmup:
                infer[name].append(seconds)
                detections[name].append(count)
        print(f"inference iteration {it + 1}/{args.warmup + args.iters} done", file=sys.stderr, flush=True)
    for it in range(args.warmup + args.iters):
        for name in _order(models, it):
            models[name].train()
            seconds = time_train_step(models[name], optimizers[name], images, targets, args.device, seed=it)
            if it >= args.warmup:
                train[name].append(seconds)
        print(f"training iteration {it + 1}/{args.warmup + args.iters} done", file=sys.stderr, flush=True)
    med = {
        f"{kind}_s_{k}": statistics.median(v[k])
        for kind, v in (("train", train), ("infer", infer))
        for k in models
    }
    return {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "backbone": args.backbone,
        "input": f"{args.height}x{args.width}",
        "batch": args.batch,
        "iters": args.iters,
        "detections_per_batch": {k: statistics.median(v) for k, v in detections.items()},
        "train_s_each": train,
        "infer_s_each": infer,
        **med,
        "train_ratio": med["train_s_ms_rcnn"] / med["train_s_mask_rcnn"],
        "infer_ratio": med["infer_s_ms_rcnn"] / med["infer_s_mask_rcnn"],
        "targets": {"train_ratio": 1.10, "infer_ratio": 1.03},
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run the benchmark, print a table (and write JSON if asked); return the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--instances", type=int, default=10, help="GT instances per training image")
    parser.add_argument("--num-classes", type=int, default=81)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures = run(args)
    print(
        f"\nMaskIoU head overhead ({figures['backbone']} FPN, {figures['input']}, batch {figures['batch']}, "
        f"{figures['device']}, median of {figures['iters']})"
    )
    print("| pass | Mask R-CNN (s) | MS R-CNN (s) | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for kind, target in (("train", 1.10), ("infer", 1.03)):
        print(
            f"| {kind} | {figures[f'{kind}_s_mask_rcnn']:.3f} | {figures[f'{kind}_s_ms_rcnn']:.3f} "
            f"| {figures[f'{kind}_ratio']:.3f} | <= {target:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return figures


if __name__ == "__main__":
    main()
