"""Benchmark: the COCO train set at full size, old storage vs AnnotationStore, in one run.

For each variant, in a fresh child process:
1. construct the training set as `CocoDataModule` does, `CocoInstanceDataset(train2017,
   instances_train2017.json, drop_empty=True)`: wall time, the process's memory before and after
   (RSS and USS, after gc) and its peak during construction (ru_maxrss);
2. one full pass of annotation loading with `--workers` forked DataLoader workers: every sample's
   `load_target` (boxes, labels, areas, polygons rasterised to RLE). The masks are not decoded into
   pixels unless `--decode-masks`: that is the same ~7 ms a picture in both variants and only adds
   each worker's own buffers. The pictures are zero-byte files, never read. Each worker reports its
   unique memory (USS) when it starts and after every chunk of samples; its growth is the last figure
   minus the first.

`old` is `CocoInstanceDataset` of commit `_old_coco.OLD_COMMIT` (a pycocotools index and per-image
Python dicts, kept beside this script); `new` is today's (flat NumPy arrays). The annotations come from
`msr.data.coco_like` (118,287 pictures, ~860k instances), generated once into the msr cache.

    python experiments/benchmarks/coco_scale_data.py                    # ~6 min on 2 CPU cores
    python experiments/benchmarks/coco_scale_data.py --images 20000 --variants new --json out.json

Targets (issue 16): construction <= 60 s, per-worker growth <= 50 MB over a full pass, main-process
memory for the annotations <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import MB, memory, write_figures  # beside this script

TARGETS = {"construct_s": 60.0, "worker_growth_mb": 50.0, "annotations_mb": 1536.0}


class AnnotationPass:
    """A map-style data set over chunks of sample indices: an item loads every target of its chunk.

    An item returns (worker pid, the worker's USS at its start and now in MB, instances loaded), so
    nothing large crosses the process boundary.
    """

    def __init__(self, dataset: Any, sizes: np.ndarray, chunk: int) -> None:
        self.dataset, self.sizes, self.chunk = dataset, sizes, chunk
        self.start_uss: float | None = None

    def __len__(self) -> int:
        return -(-len(self.sizes) // self.chunk)

    def __getitem__(self, k: int) -> tuple[int, float, float, int]:
        if self.start_uss is None:  # the first item this worker loads
            self.start_uss = memory()["uss_mb"]
        instances = 0
        for index in range(k * self.chunk, min((k + 1) * self.chunk, len(self.sizes))):
            height, width = self.sizes[index].tolist()
            instances += len(self.dataset.load_target(index, height, width)["labels"])
        return os.getpid(), self.start_uss, memory()["uss_mb"], instances


def image_sizes(dataset: Any) -> np.ndarray:
    """Return [N, 2] (height, width) of every sample, from the data set's own record of the JSON."""
    if hasattr(dataset, "coco") and "coco" in vars(dataset):  # the old class: its pycocotools index
        imgs = dataset.coco.imgs
        return np.array([(imgs[i]["height"], imgs[i]["width"]) for i in dataset.ids], dtype=np.int64)
    return np.array([dataset.image_size(i) for i in dataset.ids], dtype=np.int64)


def _no_masks(rles: list, height: int, width: int) -> np.ndarray:
    """Stand in for `decode_masks`: [N, 0, 0] (the pixels are the same work in both variants)."""
    return np.zeros((len(rles), 0, 0), dtype=np.uint8)


def run_variant(variant: str, root: Path, workers: int, chunk: int, decode: bool) -> dict[str, Any]:
    """Construct the training set with the `variant` storage and make one pass; return the figures."""
    from torch.utils.data import DataLoader

    if variant == "old":
        from _old_coco import old_coco_module

        dataset_cls = old_coco_module().CocoInstanceDataset
    else:
        from msr.data.coco import CocoInstanceDataset as dataset_cls
    if not decode:
        sys.modules[dataset_cls.__module__].decode_masks = _no_masks
    gc.collect()
    before = memory()
    start = time.perf_counter()
    dataset = dataset_cls(
        root / "train2017", root / "annotations" / "instances_train2017.json", drop_empty=True
    )
    construct_s = time.perf_counter() - start
    gc.collect()
    after = memory()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sizes = image_sizes(dataset)
    gc.collect()
    loader = DataLoader(
        AnnotationPass(dataset, sizes, chunk), batch_size=None, num_workers=workers, prefetch_factor=1
    )
    reports: dict[int, list[float]] = {}
    instances = 0
    start = time.perf_counter()
    for pid, first, now, count in loader:
        reports.setdefault(pid, [first, now])[1] = now
        instances += count
    pass_s = time.perf_counter() - start
    growth = {str(pid): round(now - first, 1) for pid, (first, now) in sorted(reports.items())}
    figures = {
        "images": len(dataset),
        "instances": instances,
        "construct_s": round(construct_s, 1),
        "rss_before_mb": round(before["rss_mb"]),
        "rss_after_mb": round(after["rss_mb"]),
        "annotations_mb": round(after["rss_mb"] - before["rss_mb"]),
        "construct_peak_rss_mb": round(peak_mb),
        "pass_s": round(pass_s, 1),
        "worker_growth_mb": growth,
        "max_worker_growth_mb": max(growth.values(), default=0.0),
        "stats": dataset.stats,
    }
    if variant == "new":
        figures["store_mb"] = round(dataset._targets.nbytes / MB)
    return figures


def child(variant: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Run one variant in a fresh interpreter (so neither sees the other's memory); return its figures."""
    command = [sys.executable, __file__, "--child", variant, "--root", str(root)]
    command += ["--workers", str(args.workers), "--chunk", str(args.chunk)]
    command += ["--decode-masks"] if args.decode_masks else []
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"coco_scale_data: the {variant} variant failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(figures: dict[str, Any]) -> str:
    """Return the Markdown table of the figures of every variant, with the targets."""
    rows = [
        ("construction (s)", "construct_s", f"<= {TARGETS['construct_s']:.0f}"),
        ("main process: memory for the annotations (MB, RSS after - before)", "annotations_mb", "<= 1536"),
        ("main process: peak RSS while constructing (MB)", "construct_peak_rss_mb", ""),
        ("largest per-worker USS growth over a full pass (MB)", "max_worker_growth_mb", "<= 50"),
        ("full pass of annotation loading (s)", "pass_s", ""),
    ]
    variants = [v for v in ("old", "new") if v in figures["variants"]]
    lines = [
        f"COCO-scale training set: {figures['images']} pictures, {figures['annotations']} instances, "
        f"{figures['workers']} workers",
        "",
        "| figure | " + " | ".join(variants) + " | target |",
        "| --- |" + " --- |" * (len(variants) + 1),
    ]
    for title, key, target in rows:
        values = [str(figures["variants"][v].get(key, "-")) for v in variants]
        lines.append(f"| {title} | " + " | ".join(values) + f" | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the variants, print the table and write --json; return the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=118_287, help="pictures of the train split")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=256, help="samples per DataLoader item")
    parser.add_argument(
        "--decode-masks", action="store_true", help="decode the masks too (~7 ms a picture, both variants)"
    )
    parser.add_argument("--variants", nargs="+", default=["old", "new"], choices=["old", "new"])
    parser.add_argument("--cache-dir", help="where the generated files go (default: the msr cache)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figures = run_variant(args.child, args.root, args.workers, args.chunk, args.decode_masks)
        print(json.dumps(figures))
        return {}

    from coco_like_files import cached_coco_like_layout

    start = time.perf_counter()
    root = cached_coco_like_layout(args.cache_dir, num_train=args.images, pictures="empty")
    stats = json.loads((root / "stats.json").read_text())["train"]
    print(f"COCO-like files ready in {time.perf_counter() - start:.0f} s: {root}", file=sys.stderr)
    figures = {
        "images": stats["images"],
        "annotations": stats["annotations"],
        "workers": args.workers,
        "targets": TARGETS,
        "variants": {v: child(v, args, root) for v in args.variants},
    }
    print(table(figures))
    write_figures(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
