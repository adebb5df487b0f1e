"""GPU benchmark: MS R-CNN, ResNet-50 FPN at 800x1333, per precision and batch size.

- training images/s for `32-true`, `16-mixed` and `bf16-mixed` (torch.autocast, with a GradScaler for
  16-mixed, as Lightning's mixed-precision plugin does) at 2, 4 and 8 images per GPU, the peak GPU
  memory of each and whether every loss stayed finite;
- inference images/s per precision (batch 2, `box_score_thresh=0`: 100 detections a picture);
- the MaskIoU head's overhead: training and inference time against Mask R-CNN (`head=none`) with
  identical weights, timed alternately (`maskiou_overhead.run` on the GPU);
- with `--quickstart`, the quickstart recipe on the GPU (`trainer=gpu`): wall time and its metrics;
  with `--study`, study (a) of the experiments (`study=mask_scoring experiment=synthetic_ablation`,
  6 runs) on the GPU and its table.

Writes the figures to `--json` and a Markdown summary to `--markdown`. Without a CUDA GPU (and no
`--device cpu`) it prints one line and exits with status 0; `--device cpu --tiny` is a smoke run
(ResNet-18, 96x128, one step each) that the tests use.

    make bench-gpu    # = python experiments/benchmarks/gpu.py --quickstart --study --json ... --markdown ...
    python experiments/benchmarks/gpu.py --batches 2 4 --iters 10 --json gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from msr.layout import RunLayout

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # experiments/ (run_benchmarks); this script's own folder is on the path
import maskiou_overhead  # noqa: E402  (beside this script)
from run_benchmarks import git_commit  # noqa: E402

PRECISIONS = {"32-true": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
#: Random weights under frozen BatchNorm diverge in two unclipped SGD steps (gradient norm 7.5e3, then
#: 2.3e12, NaN losses at the third; seen on an H200 and reproduced on CPU), and a diverged model times
#: different work (no proposals, no masks). `maskiou_overhead.MAX_GRAD_NORM` keeps every timed step finite.
NO_GPU = "gpu benchmark: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured"


def build(args: argparse.Namespace, maskiou: bool = True) -> torch.nn.Module:
    """Return MS R-CNN (or Mask R-CNN) on `args.backbone` at `args.height` x `args.width`, on the device
    (`msr.models.build_detector`, through `maskiou_overhead.make_model`)."""
    return maskiou_overhead.make_model(args, maskiou).to(args.device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None


def train_figures(args: argparse.Namespace, precision: str, batch: int) -> dict[str, Any]:
    """Return images/s, peak memory and finiteness of training steps at `precision` and `batch`."""
    dtype, device = PRECISIONS[precision], args.device
    device_type = device.split(":")[0]
    torch.manual_seed(0)
    model = build(args).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device_type, enabled=dtype is torch.float16)
    images, targets = maskiou_overhead.make_batch(
        batch, args.height, args.width, args.instances, args.num_classes, device
    )
    _reset_peak(device)
    seconds, finite = [], True
    for step in range(args.warmup + args.iters):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, maskiou_overhead.MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        finite &= all(math.isfinite(float(v.detach())) for v in losses.values())
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    images_per_s = round(batch / median, 2)
    return {
        "images_per_s": images_per_s,
        "step_s": round(median, 4),
        "peak_mb": _peak_mb(device),
        "finite": finite,
    }


@torch.no_grad()
def inference_figures(args: argparse.Namespace, precision: str, batch: int) -> dict[str, Any]:
    """Return images/s and peak memory of inference at `precision` and `batch` (100 detections each)."""
    dtype, device = PRECISIONS[precision], args.device
    torch.manual_seed(0)
    model = build(args).eval()
    images, _ = maskiou_overhead.make_batch(batch, args.height, args.width, 1, args.num_classes, device)
    _reset_peak(device)
    seconds = []
    for step in range(args.warmup + args.iters):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
            model(images)
        _sync(device)
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {
        "images_per_s": round(batch / median, 2),
        "batch_s": round(median, 4),
        "peak_mb": _peak_mb(device),
    }


def guarded(function, *args: Any) -> dict[str, Any]:
    """Return `function(*args)`, or {"error": ...} when it fails (out of memory, unsupported dtype)."""
    try:
        return function(*args)
    except (RuntimeError, NotImplementedError) as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if args and getattr(args[0], "device", "").startswith("cuda"):
            torch.cuda.empty_cache()
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}


def _program(*arguments: str) -> tuple[dict[str, Any], subprocess.CompletedProcess]:
    """Run `python -m msr.cli.<arguments>` from the repository; return ({command, wall_s}, its process)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", *arguments]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parents[1])
    figures = {"command": " ".join(arguments), "wall_s": round(time.perf_counter() - start, 1)}
    if proc.returncode != 0:
        figures["error"] = proc.stderr.strip()[-1000:]
    return figures, proc


def quickstart() -> dict[str, Any]:
    """Train the quickstart recipe on the GPU; return its wall time and final metrics."""
    run = Path(tempfile.mkdtemp(prefix="msr_quickstart_gpu_"))
    figures, proc = _program(
        "msr.cli.train", "experiment=quickstart", "trainer=gpu", "logger=csv", f"hydra.run.dir={run}"
    )
    if proc.returncode == 0:
        metrics = json.loads(RunLayout(run).metrics("val").read_text())
        keep = ("bbox/AP", "segm/AP", "calib/pearson_mask_score", "calib/pearson_class_score")
        figures["metrics"] = {k: metrics[k] for k in keep if k in metrics}
    return figures


def study_a() -> dict[str, Any]:
    """Run study (a) (`study=mask_scoring`: Mask R-CNN vs MS R-CNN, 3 seeds, synthetic) on the GPU and
    aggregate it; return the wall times and the Markdown table."""
    sweep = Path(tempfile.mkdtemp(prefix="msr_study_a_gpu_"))
    train, proc = _program(
        "msr.cli.train",
        "study=mask_scoring",
        "experiment=synthetic_ablation",
        "trainer=gpu",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )
    if proc.returncode != 0:
        return {"train": train}
    table, proc = _program("msr.cli.aggregate", str(sweep), "--out", str(sweep / "study_a"))
    return {"train": train, "aggregate": table, "table": proc.stdout.strip()}


def markdown(figures: dict[str, Any]) -> str:
    """Return the Markdown summary of the figures."""
    lines = [
        "# GPU benchmark",
        "",
        f"- date: {figures['date']}, commit: {figures['commit']}",
        f"- device: {figures['device']}, torch {figures.get('torch', torch.__version__)}",
        f"- model: MS R-CNN, {figures['backbone']} FPN, {figures['input']}, "
        f"median of {figures['iters']} steps",
        "",
        "| precision | batch | train images/s | train peak MB | losses finite "
        "| infer images/s (batch 2) | infer peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for precision, row in figures["precisions"].items():
        infer = row["inference"]
        for batch, train in row["train"].items():
            speed = train.get("error", train.get("images_per_s"))
            if train.get("finite") is False:  # a diverged model's step is other work: not a valid timing
                speed = f"{speed} (diverged)"
            cells = [speed, train.get("peak_mb"), train.get("finite")]
            cells += [infer.get("error", infer.get("images_per_s")), infer.get("peak_mb")]
            lines.append(f"| {precision} | {batch} | " + " | ".join(str(c) for c in cells) + " |")
    overhead = figures.get("maskiou_overhead")
    if overhead:
        lines += [
            "",
            "MaskIoU head overhead (identical weights, alternating timing, 32-true): training "
            f"{overhead['train_ratio']:.3f}x, inference {overhead['infer_ratio']:.3f}x of Mask R-CNN",
        ]
    if "quickstart" in figures:
        lines += ["", f"quickstart on the GPU: {json.dumps(figures['quickstart'])}"]
    if "study_a" in figures:
        study = figures["study_a"]
        lines += ["", f"study (a) on the GPU: {json.dumps(study['train'])}", "", study.get("table", "")]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything the arguments ask for; return the figures."""
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    figures: dict[str, Any] = {
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "commit": git_commit(),
        "device": device_name,
        "torch": torch.__version__,
        "backbone": args.backbone,
        "input": f"{args.height}x{args.width}",
        "iters": args.iters,
        "precisions": {},
    }
    for precision in args.precisions:
        train = {}
        for batch in args.batches:
            train[batch] = guarded(train_figures, args, precision, batch)
            print(f"{precision} batch {batch}: {train[batch]}", file=sys.stderr, flush=True)
        infer = guarded(inference_figures, args, precision, 2)
        figures["precisions"][precision] = {"train": train, "inference": infer}
    if not args.no_overhead:
        figures["maskiou_overhead"] = {
            k: v for k, v in maskiou_overhead.run(args).items() if not k.endswith("_each")
        }
    if args.quickstart:
        figures["quickstart"] = quickstart()
    if args.study:
        figures["study_a"] = study_a()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark (or say there is no GPU), write the files; return 0."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="ResNet-18 at 96x128, one step: a smoke run")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--batches", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-overhead", action="store_true", help="skip the MaskIoU head overhead")
    parser.add_argument("--quickstart", action="store_true", help="also train the quickstart on the GPU")
    parser.add_argument("--study", action="store_true", help="also run study (a), 6 runs, on the GPU")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown summary here")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(NO_GPU)
        if args.json:  # make bench on a machine without a GPU: the summary's link finds a file
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"skipped": NO_GPU}))
        return 0
    args.backbone, args.height, args.width = "resnet50", 800, 1333
    if args.tiny:
        args.backbone, args.height, args.width, args.iters, args.warmup = "resnet18", 96, 128, 1, 0
    args.instances, args.num_classes, args.batch = 10, 81, 2  # args.batch: maskiou_overhead's
    if args.tiny:  # a smoke run: few instances and classes (bf16 on a CPU without it is emulated, slow)
        args.instances, args.num_classes, args.batch = 2, 3, 1
    figures = run(args)
    summary = markdown(figures)
    print(summary)
    for path, text in ((args.json, json.dumps(figures, indent=2)), (args.markdown, summary)):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
