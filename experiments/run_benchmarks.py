"""Run every benchmark under experiments/benchmarks/ and collect their figures.

    python experiments/run_benchmarks.py                   # all, default settings (CPU: about two hours)
    python experiments/run_benchmarks.py --only coco_eval_speed --out /tmp/bench
    make bench

Each script runs in its own process with `--json <out>/<script>.json`; its printed table goes into
`<out>/SUMMARY.md` together with the machine, the git commit and the date. A script that fails is
reported in the summary with its exit status and the end of its error output, and makes this
command exit with status 1 after the others have run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from msr.files import write_text_atomic

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE / "benchmarks"
DEFAULT_OUT = BENCHMARKS / "results"


def benchmark_scripts(only: list[str] | None = None) -> list[Path]:
    """Return the benchmark scripts, sorted by name (only those named in `only`, if given)."""
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    if only:
        unknown = sorted(set(only) - {p.stem for p in scripts})
        if unknown:
            raise SystemExit(
                f"run_benchmarks: unknown benchmark(s) {unknown}; have {[p.stem for p in scripts]}"
            )
        scripts = [p for p in scripts if p.stem in only]
    return scripts


def run_one(script: Path, out: Path) -> dict:
    """Run one benchmark script; return {name, status, seconds, output, json}."""
    json_path = out / f"{script.stem}.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script), "--json", str(json_path)],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    )
    return {
        "name": script.stem,
        "status": proc.returncode,
        "seconds": time.perf_counter() - start,
        "output": proc.stdout.strip(),
        "errors": proc.stderr.strip()[-2000:],
        "json": json_path,
    }


def git_commit() -> str:
    """Return the current commit (with '+dirty' when the tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=HERE)
    except OSError:
        return "unknown"
    return (
        sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if sha.returncode == 0 else "unknown"
    )


def summary(results: list[dict]) -> str:
    """Return the Markdown summary of the benchmark runs."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    lines = [
        "# Benchmark figures",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- commit: {git_commit()}",
        f"- machine: {platform.machine()}, {device}",
        f"- Python {platform.python_version()}, torch {torch.__version__}",
        "",
    ]
    for r in results:
        state = "ok" if r["status"] == 0 else f"FAILED (exit status {r['status']})"
        lines += [f"## {r['name']}: {state}, {r['seconds']:.0f} s", ""]
        if r["status"] == 0:
            lines += [f"Figures: `{r['json'].name}`", "", "```", r["output"], "```", ""]
        else:
            lines += ["```", r["errors"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, write the JSON files and SUMMARY.md; return 0 if all succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder of the JSON files and SUMMARY.md"
    )
    parser.add_argument("--only", nargs="+", help="benchmark names (script names without .py)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for script in benchmark_scripts(args.only):
        print(f"running {script.name} ...", flush=True)
        results.append(run_one(script, args.out))
        print(results[-1]["output"] or results[-1]["errors"], flush=True)
    write_text_atomic(summary(results), args.out / "SUMMARY.md")
    print(f"wrote {args.out / 'SUMMARY.md'}")
    return 0 if all(r["status"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
