"""Head-only studies: every head of a trunk in one shared pass against every job in a pass of its own.

    python experiments/benchmarks/head_pass_speed.py [--studies b c d] [--head-epochs 1] [--seed 0]

Runs the real msr-train sweep of each study (b: input_designs, Table 4; c: training_targets, Table 5;
d: threshold, Table 6) at the `synthetic_cpu_study` recipe with `protocol=head_only` and one seed, twice
in one run: `protocol.shared_pass=false` (job by job: every job runs the frozen trunk for its own head and
detects for its own evaluation) and `protocol.shared_pass=true` (one trunk pass per batch and one
detection per evaluation for all heads). The trunk is trained (or found in the cache) before anything is
timed (`protocol.head_max_epochs=0`). Each side's time is the wall time of its whole sweep command: start-up,
data, training of the heads and the final evaluation of every job. The two sides alternate their order
from study to study so that the machine's load hits both alike. Prints a table with the ratio
shared / job by job per study and writes the figures as JSON (`--json`); run_benchmarks.py collects it.
`--head-epochs` is the heads' share of the recipe's 5 epochs (the ratio is per step; 5 is the full budget).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from msr.files import write_json_atomic

REPO = Path(__file__).resolve().parents[2]
#: The studies by the letter experiments/README.md gives them, with the number of jobs of one seed.
STUDIES = {"b": ("input_designs", 4), "c": ("training_targets", 3), "d": ("threshold", 4)}
RECIPE = [
    "experiment=synthetic_cpu_study",
    "protocol=head_only",
    "logger=csv",
    "trainer.enable_progress_bar=false",
]


def run(command: list[str], env: dict[str, str]) -> float:
    """Return the wall time of the msr-train `command`; stop with its output when it fails."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "msr.cli.train", *command], env=env, cwd=REPO, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"msr-train {' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return seconds


def main(argv: list[str] | None = None) -> dict:
    """Time the studies both ways; print the table, write the JSON figures (`--json`) and return them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--head-epochs", type=int, default=1, help="epochs of the heads (recipe: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--extra", nargs="*", default=[], help="more msr-train overrides (e.g. smaller data)")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    recipe = [*RECIPE, *args.extra]
    seed = [f"seed={args.seed}"]
    start = time.perf_counter()
    run(
        [*recipe, *seed, "protocol.head_max_epochs=0", f"hydra.run.dir={tempfile.mkdtemp(prefix='trunk_')}"],
        env,
    )
    print(
        f"trunk of seed {args.seed} ready in {time.perf_counter() - start:.0f} s (trained, or from the cache)"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="head_pass_speed_") as tmp:
        for number, letter in enumerate(args.studies):
            study, jobs = STUDIES[letter]
            sweep = [
                *recipe,
                f"study={study}",
                f"hydra.sweeper.params.seed={args.seed}",
                f"protocol.head_max_epochs={args.head_epochs}",
            ]
            seconds = {}
            order = (False, True) if number % 2 == 0 else (True, False)
            for shared in order:
                name = "shared" if shared else "job_by_job"
                folder = Path(tmp) / f"{letter}_{name}"
                seconds[name] = run(
                    [
                        "--multirun",
                        *sweep,
                        f"protocol.shared_pass={str(shared).lower()}",
                        f"hydra.sweep.dir={folder}",
                    ],
                    env,
                )
                print(f"({letter}) {study}, {name}: {seconds[name]:.0f} s", flush=True)
            rows.append(
                {
                    "study": letter,
                    "name": study,
                    "jobs": jobs,
                    **seconds,
                    "ratio": seconds["shared"] / seconds["job_by_job"],
                }
            )
    print(
        f"\nhead-only studies, one seed, heads trained {args.head_epochs} epoch(s) of synthetic_cpu_study's 5"
    )
    print(f"{'study':<22} {'jobs':>4} {'job by job s':>13} {'shared s':>9} {'shared / job by job':>20}")
    for r in rows:
        print(
            f"({r['study']}) {r['name']:<18} {r['jobs']:>4} {r['job_by_job']:>13.0f} {r['shared']:>9.0f} "
            f"{r['ratio']:>20.3f}"
        )
    figures = {"head_epochs": args.head_epochs, "seed": args.seed, "extra": args.extra, "studies": rows}
    if args.json:
        write_json_atomic(figures, args.json, indent=2)
        print(f"figures written to {args.json}")
    return figures


if __name__ == "__main__":
    main()
