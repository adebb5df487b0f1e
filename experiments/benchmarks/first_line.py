"""Start-up of the programs as a user meets it: seconds from launch to the first line printed, and to the
end for commands that end at once (`--help`, a typo). Each command runs `--repeats` times in a fresh
interpreter (the median is shown); a training run is stopped after its first line. (startup.py beside it
times whole light jobs and the heavy imports.)

    python experiments/benchmarks/first_line.py [--repeats 3]

The goals (issue "The first hour without surprises"): `--help` under 1 s, any program's first line within
3 s on 2 cores. Compare figures only within one run of this script: the machine's speed varies.
"""

from __future__ import annotations

import argparse
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (label, program module, arguments, stop after the first line)
COMMANDS: list[tuple[str, str, list[str], bool]] = [
    ("msr-train --help", "train", ["--help"], False),
    ("msr-eval --help", "evaluate", ["--help"], False),
    ("msr-predict --help", "predict", ["--help"], False),
    ("msr-convert --help", "convert", ["--help"], False),
    ("msr-aggregate --help", "aggregate", ["--help"], False),
    ("msr-train schedule.max_step=4 (typo)", "train", ["schedule.max_step=4"], False),
    ("msr-train +schedule.max_step=4 (typo)", "train", ["+schedule.max_step=4"], False),
    ("msr-train experiment=quickstart (first line)", "train", ["experiment=quickstart", "logger=none"], True),
    ("msr-eval ckpt_path=missing.ckpt", "evaluate", ["ckpt_path=missing.ckpt"], False),
]


def timed(module: str, args: list[str], folder: Path, stop_after_first: bool) -> tuple[float, float | None]:
    """Return (seconds to the first output line, seconds to the end or None when stopped) of one run."""
    command = [sys.executable, "-m", f"msr.cli.{module}", *args]
    if module in ("train", "evaluate", "predict") and "--help" not in args:
        command.append(f"hydra.run.dir={folder / str(time.monotonic_ns())}")
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    selector.register(proc.stderr, selectors.EVENT_READ)
    first = None
    while first is None:
        for key, _ in selector.select(timeout=60):
            if key.fileobj.readline().strip():
                first = time.perf_counter() - start
                break
        if proc.poll() is not None and first is None:
            first = time.perf_counter() - start
    if stop_after_first:
        proc.kill()
        proc.wait()
        return first, None
    proc.communicate()
    return first, time.perf_counter() - start


def main() -> None:
    """Print the median seconds to the first line and to the end of every command, side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeats} runs")
    print(f"| {'command':<46} | first line, s | end, s |")
    print(f"|{'-' * 48}|---------------|--------|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, module, argv, stop in COMMANDS:
            runs = [timed(module, argv, Path(tmp), stop) for _ in range(args.repeats)]
            first = statistics.median(r[0] for r in runs)
            ends = [r[1] for r in runs if r[1] is not None]
            end = f"{statistics.median(ends):6.2f}" if ends else "     -"
            print(f"| {label:<46} | {first:13.2f} | {end} |")


if __name__ == "__main__":
    main()
