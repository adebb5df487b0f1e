"""Training-loader throughput (samples/s) with 0, 1 and 2 workers on the synthetic and balloon sets.

Usage:
    python experiments/benchmarks/datamodule_throughput.py [--json figures.json] [--workers 0 1 2]

Both sets are measured side by side in one run. The synthetic set (default parameters) comes
from the cache (``$MSR_CACHE_DIR`` or ``~/.cache/msr``; ``--cache-dir`` to choose, generated if
missing and timed). The balloon set (``../shared/data/balloon`` beside the repository, or
``--balloon``) is converted to COCO into a temporary folder first. Each figure is one pass over
the training loader after its first batch (whose latency, including worker start-up, is reported
separately): samples/s = pictures delivered / seconds, including mask decoding, transforms and
collation, i.e. what the training step waits for. ``--torch-threads`` (default 1) sets the
main process's intra-op threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from msr.data.convert import via_to_coco
from msr.data.datamodules import CocoDataModule, SyntheticDataModule
from msr.data.synthetic import generate_synthetic_coco, synthetic_params
from msr.files import write_json_atomic

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BALLOON = REPO / ".." / "shared" / "data" / "balloon"


def measure(dm: CocoDataModule, num_workers: int, max_batches: int | None) -> dict[str, Any]:
    """Return throughput figures of one pass over ``dm``'s training loader with ``num_workers``."""
    dm.num_workers = num_workers
    loader = dm.train_dataloader()
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first_batch_s = time.perf_counter() - start
    samples = 0
    start = time.perf_counter()
    for count, (images, _targets) in enumerate(batches, start=1):
        samples += len(images)
        if max_batches is not None and count >= max_batches:
            break
    seconds = time.perf_counter() - start
    del batches
    return {
        "num_workers": num_workers,
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 1) if seconds > 0 else None,
        "first_batch_s": round(first_batch_s, 3),
    }


def loader_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the loader settings of both data modules (`measure` sets the number of workers)."""
    return {
        "batch_size": args.batch_size,
        "eval_batch_size": None,
        "num_workers": 0,
        "pin_memory": False,
        "persistent_workers": False,
    }


def _balloon_module(balloon: Path, tmp: Path, args: argparse.Namespace) -> CocoDataModule:
    """Return a DataModule over the balloon training split converted into ``tmp``."""
    coco = via_to_coco(balloon / "train" / "via_region_data.json", category="balloon")
    ann = write_json_atomic(coco, tmp / "train.json")
    return CocoDataModule(
        train_images=str(balloon / "train"),
        train_ann=str(ann),
        **loader_settings(args),
        min_size=args.balloon_min_size,
        max_size=args.balloon_max_size,
        hflip_prob=0.5,
    )


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'dataset':<34} {'workers':>7} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'1st batch s':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['dataset']:<34} {row['num_workers']:>7} {row['samples']:>8} {row['seconds']:>8.2f} "
            f"{row['samples_per_s']:>10} {row['first_batch_s']:>11.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and optionally write JSON; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-batches", type=int, default=None, help="cap batches per measurement")
    parser.add_argument("--cache-dir", default=None, help="synthetic cache root (default: $MSR_CACHE_DIR)")
    parser.add_argument("--balloon", type=Path, default=DEFAULT_BALLOON)
    parser.add_argument("--balloon-min-size", type=int, default=800)
    parser.add_argument("--balloon-max-size", type=int, default=1333)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads of the main process, which does the loading with 0 workers (workers always "
        "use 1); on small pictures and a busy CPU more threads mostly add synchronisation cost",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.torch_threads)

    params = synthetic_params()
    start = time.perf_counter()
    paths = generate_synthetic_coco(args.cache_dir, **params)
    synthetic_s = time.perf_counter() - start
    print(f"synthetic set {paths.root} ready in {synthetic_s:.1f} s (generation or cache hit)")
    modules: dict[str, CocoDataModule] = {
        f"synthetic {params['num_train']} x {params['image_size'][0]}px": SyntheticDataModule(
            cache_dir=args.cache_dir, **loader_settings(args)
        )
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if (args.balloon / "train" / "via_region_data.json").is_file():
            name = f"balloon 61 imgs, resize {args.balloon_min_size}/{args.balloon_max_size}"
            modules[name] = _balloon_module(args.balloon.resolve(), Path(tmp), args)
        else:
            print(f"balloon set not found at {args.balloon}; measuring synthetic only", file=sys.stderr)
        for dm in modules.values():
            dm.setup("fit")
        for num_workers in args.workers:  # side by side: both sets at each worker count
            for name, dm in modules.items():
                rows.append({"dataset": name, **measure(dm, num_workers, args.max_batches)})
    _print_table(rows)
    if args.json is not None:
        figures = {
            "batch_size": args.batch_size,
            "synthetic_ready_s": round(synthetic_s, 2),
            "synthetic_params": params,
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": args.torch_threads,
            "machine": platform.platform(),
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
