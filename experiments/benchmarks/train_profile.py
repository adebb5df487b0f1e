"""Profile of the quickstart's training step: the operators that take the time, with torch.profiler.

    python experiments/benchmarks/train_profile.py [--steps 10] [--warmup 3] [--top 20] [ARGS overrides]

Builds `experiment=quickstart` (plus any Hydra overrides given after the options) as msr-train does: the
synthetic data module's training loader and the detector of `cfg.model`. Then it runs `--warmup` steps and
profiles `--steps` more (forward, backward, the configured optimizer's step; batches loaded before the
timed region so the profile is the model's), and prints the top operators by self CPU time and the share
of the step each part of the model takes (backbone + FPN, RPN, box head, mask head, MaskIoU head:
record_function scopes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.profiler import ProfilerActivity, profile, record_function

from msr.cli.common import CONFIG_DIR
from msr.files import write_json_atomic
from msr.training.assembly import build_net
from msr.training.module import model_target, plain_images

#: Parts of the detector timed as record_function scopes: (label, attribute path from the net).
PARTS = (
    ("backbone + FPN", "backbone"),
    ("RPN", "rpn"),
    ("box head", "roi_heads.box_head"),
    ("box predictor", "roi_heads.box_predictor"),
    ("mask head", "roi_heads.mask_head"),
    ("mask predictor", "roi_heads.mask_predictor"),
    ("MaskIoU head", "roi_heads.maskiou_head"),
)


def scoped(module: torch.nn.Module, label: str) -> None:
    """Wrap `module.forward` in a record_function scope named `label`."""
    forward = module.forward

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with record_function(f"part: {label}"):
            return forward(*args, **kwargs)

    module.forward = wrapped


def submodule(net: torch.nn.Module, path: str) -> torch.nn.Module | None:
    """Return the submodule at the dotted `path`, or None when the net has none there."""
    node: Any = net
    for name in path.split("."):
        node = getattr(node, name, None)
        if node is None:
            return None
    return node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.batch_size=8")
    args = parser.parse_args()

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quickstart", "data.num_workers=0", *args.overrides])
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    net = build_net(cfg, datamodule.num_classes).train()
    for label, path in PARTS:
        module = submodule(net, path)
        if module is not None:
            scoped(module, label)
    optimizer = instantiate(cfg.optimizer)([p for p in net.parameters() if p.requires_grad])  # as configured
    loader = iter(datamodule.train_dataloader())
    batches = [next(loader) for _ in range(args.warmup + args.steps)]

    def step(batch: Any) -> None:
        images, targets = batch
        losses = net(plain_images(images), [model_target(t) for t in targets])
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    for batch in batches[: args.warmup]:
        step(batch)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[args.warmup :]:
            with record_function("part: optimizer + backward + forward (whole step)"):
                step(batch)
    seconds = (time.perf_counter() - start) / args.steps
    events = prof.key_averages()
    print(
        f"quickstart training step, batch {cfg.data.batch_size}, {torch.get_num_threads()} threads, "
        f"{seconds:.3f} s/step under the profiler (mean of {args.steps})\n"
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    whole = sum(e.cpu_time_total for e in events if e.key.startswith("part: optimizer"))
    parts = {e.key.removeprefix("part: "): e.cpu_time_total for e in events if e.key.startswith("part: ")}
    print("| part (forward only; backward is counted in the whole step) | share of the step |")
    print("| --- | --- |")
    for label, total in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {100 * total / whole:.1f} % |")
    top = [
        {"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000 / args.steps, "calls": e.count / args.steps}
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]
    ]
    figures = {
        "s_per_step": seconds,
        "batch": int(cfg.data.batch_size),
        "top_ops": top,
        "part_share": {k: v / whole for k, v in parts.items()},
    }
    print(json.dumps({"s_per_step": seconds}))
    if args.json is not None:
        write_json_atomic(figures, args.json, indent=1)


if __name__ == "__main__":
    main()
