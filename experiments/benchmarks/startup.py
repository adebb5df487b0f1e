"""Benchmark: start-up of the light programs, which should start their work within 3 s.

Each command runs `--repeats` times on tiny inputs written to a temporary folder (a COCO-like file of
20 pictures and results made from its own instances; a VIA file of 2 pictures), so its wall time is
its start-up plus a job of a few milliseconds. One more run under `python -X importtime` lists the
heavy packages it imported (torch, lightning, wandb, ...) and how long the imports took.

    python experiments/benchmarks/startup.py [--repeats 3] [--json out.json]

Target (issue 16): each command within 3 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write_figures  # beside this script

TARGET_S = 3.0
HEAVY = ("torch", "torchvision", "lightning", "wandb", "scipy", "matplotlib", "pycocotools", "hydra")


def write_inputs(folder: Path) -> dict[str, Path]:
    """Write the commands' inputs into `folder`; return their paths."""
    import pycocotools.mask as mask_utils
    from coco_like_files import write_coco_like_json
    from PIL import Image

    ann = folder / "instances_val.json"
    write_coco_like_json(ann, 20, seed=0, split="val")
    data = json.loads(ann.read_text())
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    results = []
    for a in data["annotations"]:
        if a["iscrowd"]:
            continue
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], *sizes[a["image_id"]]))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append(
            {"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": rle, "score": 0.9}
        )
    (folder / "segm_results.json").write_text(json.dumps(results))
    via = {}
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (64, 48)).save(folder / name)
        region = {"shape_attributes": {"name": "rect", "x": 5, "y": 5, "width": 20, "height": 10}}
        via[name] = {"filename": name, "regions": [region]}
    (folder / "via.json").write_text(json.dumps(via))
    return {"ann": ann, "results": folder / "segm_results.json", "via": folder / "via.json"}


def commands(folder: Path, inputs: dict[str, Path]) -> dict[str, list[str]]:
    """Return the timed command lines by name (console scripts beside this Python)."""
    bin_dir = Path(sys.executable).parent

    def program(name: str) -> str:
        return str(bin_dir / name) if (bin_dir / name).is_file() else name

    return {
        "msr-eval results=... ann_file=...": [
            program("msr-eval"),
            f"results={inputs['results']}",
            f"ann_file={inputs['ann']}",
            f"hydra.run.dir={folder / 'eval'}",
        ],
        "msr-convert --help": [program("msr-convert"), "--help"],
        "msr-convert via ...": [
            program("msr-convert"),
            "via",
            str(inputs["via"]),
            "--out",
            str(folder / "via_coco.json"),
        ],
        "msr-aggregate --help": [program("msr-aggregate"), "--help"],
    }


def heavy_imports(command: list[str]) -> dict[str, float]:
    """Return {package: cumulative import seconds} of the HEAVY packages `command` imports."""
    with open(command[0]) as f:
        is_script = f.read(2) == "#!"
    argv = [sys.executable, "-X", "importtime", command[0], *command[1:]] if is_script else command
    proc = subprocess.run(argv, capture_output=True, text=True)
    found: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and match.group(3) in HEAVY:
            found[match.group(3)] = max(found.get(match.group(3), 0.0), int(match.group(1)) / 1e6)
    return {k: round(v, 2) for k, v in sorted(found.items())}


def measure(repeats: int) -> dict[str, Any]:
    """Time every command `repeats` times; return {name: {min_s, median_s, heavy_imports}}."""
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="msr_startup_") as tmp:
        folder = Path(tmp)
        for name, command in commands(folder, write_inputs(folder)).items():
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                proc = subprocess.run(command, capture_output=True, text=True)
                seconds.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise SystemExit(f"startup: `{name}` failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
            figures[name] = {
                "min_s": round(min(seconds), 2),
                "median_s": round(statistics.median(seconds), 2),
                "heavy_imports_s": heavy_imports(command),
            }
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, time the commands, print the table and write --json; return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    figures = {"target_s": TARGET_S, "commands": measure(args.repeats)}
    print(f"Start-up on tiny inputs (best and median of {args.repeats} runs)")
    print("| command | best (s) | median (s) | target | heavy packages imported (import s) |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in figures["commands"].items():
        heavy = ", ".join(f"{k} {v}" for k, v in row["heavy_imports_s"].items()) or "none"
        print(f"| `{name}` | {row['min_s']} | {row['median_s']} | <= {TARGET_S:.0f} | {heavy} |")
    write_figures(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
