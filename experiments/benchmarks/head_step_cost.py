"""What a head-only training step costs at COCO scale, against a full MS R-CNN training step, side by side.

    python experiments/benchmarks/head_step_cost.py                   # R-50 FPN, 800x1333, batch 2, CPU
    python experiments/benchmarks/head_step_cost.py --device cuda --iters 10 --json out.json

Three steps on the same batch, timed alternately (their order rotates every iteration, so machine noise
hits all alike; medians of the timed iterations):
- `full`: MS R-CNN trained end to end (forward, every loss, backward, SGD step; msr's training step);
- `head x1`: the head stage with one head (the frozen trunk's forward for the MaskIoU inputs, then the
  head's forward, loss, backward and step: msr.models.frozen_trunk.training_inputs and MaskIoUBranch);
- `head x4`: the head stage with the four input designs of Table 4 in one pass.
The ratios say what a head-only job costs against training the detector (`head x1 / full`) and what each
variant of a 4-design pass costs (`head x4 / 4 / full`); experiments/studies/protocol.md uses them, with a
measured full-training throughput, to estimate a retrofit's cost per variant.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import torch
from maskiou_overhead import make_batch, time_train_step  # beside this script

from msr.files import write_json_atomic
from msr.models import INPUT_DESIGNS, build_detector, build_resnet_fpn_backbone
from msr.models.frozen_trunk import training_inputs
from msr.models.maskiou.branch import MaskIoUBranch

#: The four input designs of the paper's Table 4, as msr names them.
TABLE_4 = ("concat", "multiply", "all_masks", "concat_28")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def head_step(trunk, branches, optimizer, images, targets, device: str) -> float:
    """Return the wall time of one head-stage step of `branches` on the frozen `trunk`."""
    sync(device)
    start = time.perf_counter()
    torch.manual_seed(0)
    inputs = training_inputs(trunk, images, targets)
    loss = torch.stack([branch.training_loss(inputs) for branch in branches]).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    """Time the three steps; print the table, write the JSON figures (`--json`) and return them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--num-classes", type=int, default=81)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    build = functools.partial(
        build_detector, args.num_classes, min_size=args.height, max_size=args.width, box_score_thresh=0.0
    )
    full = build(build_resnet_fpn_backbone(args.backbone), maskiou_head=INPUT_DESIGNS["concat"]).to(
        args.device
    )
    trunk = build(build_resnet_fpn_backbone(args.backbone)).to(args.device)
    trunk.load_state_dict(full.state_dict(), strict=False)
    for parameter in trunk.parameters():
        parameter.requires_grad_(False)
    trunk.train()
    pool = trunk.roi_heads.mask_roi_pool
    channels = trunk.backbone.out_channels
    branches = [
        MaskIoUBranch(INPUT_DESIGNS[d](num_classes=args.num_classes, in_channels=channels), pool).to(
            args.device
        )
        for d in TABLE_4
    ]
    images, targets = make_batch(
        args.batch, args.height, args.width, args.instances, args.num_classes, args.device
    )

    def sgd(params):
        return torch.optim.SGD(list(params), lr=1e-4, momentum=0.9)

    steps = {
        "full": (
            lambda opt: time_train_step(full, opt, images, targets, args.device, 0),
            sgd(full.parameters()),
        ),
        "head x1": (
            lambda opt: head_step(trunk, branches[:1], opt, images, targets, args.device),
            sgd(branches[0].parameters()),
        ),
        "head x4": (
            lambda opt: head_step(trunk, branches, opt, images, targets, args.device),
            sgd(p for b in branches for p in b.parameters()),
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for iteration in range(args.warmup + args.iters):
        order = names[iteration % len(names) :] + names[: iteration % len(names)]
        for name in order:
            run, optimizer = steps[name]
            elapsed = run(optimizer)
            if iteration >= args.warmup:
                seconds[name].append(elapsed)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = {
        "head_x1_over_full": median["head x1"] / median["full"],
        "head_x4_over_full": median["head x4"] / median["full"],
        "per_variant_of_4_over_full": median["head x4"] / 4 / median["full"],
    }
    device = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"{args.backbone} FPN, {args.height}x{args.width}, batch {args.batch}, {args.num_classes} classes, "
        f"{device}, median of {args.iters}"
    )
    print(f"{'step':<10} {'seconds':>9} {'/ full':>8}")
    for name in names:
        print(f"{name:<10} {median[name]:>9.3f} {median[name] / median['full']:>8.3f}")
    print(f"per variant of a 4-design pass: {ratios['per_variant_of_4_over_full']:.3f} of a full step")
    figures = {
            "device": device,
            "backbone": args.backbone,
            "input": f"{args.height}x{args.width}",
            "batch": args.batch,
            "iters": args.iters,
            "seconds": median,
            "all_seconds": seconds,
            **ratios,
        }
    if args.json:
        write_json_atomic(figures, args.json, indent=2)
        print(f"figures written to {args.json}")
    return figures


if __name__ == "__main__":
    main()
