"""Run a study's jobs side by side on one machine (one GPU holds many small synthetic runs at once).

Each job is one `msr-train` process with its own `hydra.run.dir` (`<out>/<variant>_seed<S>`), so
`msr-aggregate <out>` reads the folder as it reads a Hydra multirun sweep. With `--budget-s`, a short
probe first runs every job for `--probe-steps` steps at once, reads each job's training rate from
its progress bar, and sizes `schedule.max_epochs` so that the real runs end inside the budget; the
probe's rates and the chosen epochs are written to `<out>/plan.json`. `+trainer.max_time` guards
every job as well: a job stopped by it still evaluates, and `plan.json` records which were stopped.

Measured on one H200 (experiments/studies/mask_scoring.md): six 128-px synthetic runs side by side
made 14 steps/s together, one alone 13.8, so packing jobs on one GPU gains nothing for this model;
the script's use is one command, one folder and one time budget for a study, not speed.

    python experiments/parallel_runs.py --out runs/study_a --variants head=maskiou head=none \\
        --seeds 0 1 2 --budget-s 400 --steps-per-epoch 250 -- experiment=synthetic_converged trainer=gpu
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RATE = re.compile(r"(\d+(?:\.\d+)?)(it/s|s/it)")


def job_name(variant: str, seed: int) -> str:
    """Return a folder name for a variant's overrides and a seed ('=' -> '-', other than [\\w.-] -> '_')."""
    return re.sub(r"[^\w.-]", "_", variant.replace("=", "-")) + f"_seed{seed}"


def last_rate(text: str) -> float | None:
    """Return the last training rate (steps/s) a progress bar printed in `text` ('2.5it/s' or '1.3s/it'),
    or None when it printed none."""
    rates = RATE.findall(text)
    if not rates:
        return None
    value, unit = rates[-1]
    return float(value) if unit == "it/s" else 1 / float(value)


def launch(out: Path, variant: str, seed: int, common: list[str], extra: list[str]) -> tuple[Path, Any]:
    """Start one msr-train job; return its folder and process (stdout and stderr in `<folder>.log`)."""
    folder = out / job_name(variant, seed)
    command = [sys.executable, "-m", "msr.cli.train", *common, *variant.split(), f"seed={seed}", *extra]
    command.append(f"hydra.run.dir={folder}")
    with open(f"{folder}.log", "w") as log:  # the child keeps its own copy of the file descriptor
        log.write(" ".join(command) + "\n")
        log.flush()
        return folder, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def run_all(out: Path, jobs: list[tuple[str, int]], common: list[str], extra: list[str]) -> dict[str, Any]:
    """Run every (variant, seed) job at once; return each job's exit status, seconds from the launch to
    its end (to the second), last training rate and whether +trainer.max_time stopped it."""
    started = time.perf_counter()
    running = [(variant, seed, *launch(out, variant, seed, common, extra)) for variant, seed in jobs]
    ended: dict[int, float] = {}
    while len(ended) < len(running):
        for index, (*_, proc) in enumerate(running):
            if index not in ended and proc.poll() is not None:
                ended[index] = time.perf_counter() - started
        time.sleep(1)
    report = {}
    for index, (variant, seed, folder, proc) in enumerate(running):
        text = Path(f"{folder}.log").read_text(errors="replace")
        rate = last_rate(text)
        report[folder.name] = {
            "variant": variant,
            "seed": seed,
            "exit": proc.returncode,
            "wall_s": round(ended[index]),
            "steps_per_s": rate,
            "stopped_by_max_time": "Time limit reached" in text,
        }
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, probe (with --budget-s), run the jobs, write plan.json; return 0 if all ran."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", required=True, help="one quoted override list per variant")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget-s", type=float, help="size max_epochs so the runs end inside this")
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--probe-steps", type=int, default=80)
    parser.add_argument("--eval-s", type=float, default=15.0, help="seconds one validation is allowed")
    parser.add_argument("--val-every", type=int, default=2, help="epochs between validations")
    parser.add_argument("--max-epochs-cap", type=int, default=40)
    parser.add_argument("overrides", nargs="*", help="after --: overrides every job shares")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    plan: dict[str, Any] = {"jobs": len(jobs), "overrides": args.overrides}
    extra: list[str] = []
    if args.budget_s:
        started = time.perf_counter()
        (args.out / "probe").mkdir(exist_ok=True)
        probe_overrides = [f"schedule.max_steps={args.probe_steps}", "final_eval=false"]
        probe = run_all(args.out / "probe", jobs, args.overrides, probe_overrides)
        rates = [job["steps_per_s"] for job in probe.values() if job["steps_per_s"]]
        left = args.budget_s - (time.perf_counter() - started)
        slowest = min(rates) if rates else None
        epochs = 1
        if slowest:
            # per epoch: its steps, plus a validation every val_every epochs; 0.85 leaves room for start-up
            per_epoch = args.steps_per_epoch / slowest + args.eval_s / args.val_every
            epochs = max(1, min(args.max_epochs_cap, int(0.85 * (left - 30) / per_epoch)))
            epochs -= epochs % args.val_every if epochs >= args.val_every else 0
        plan.update(probe=probe, slowest_steps_per_s=slowest, budget_left_s=round(left), max_epochs=epochs)
        minutes = max(1, int(left / 60))
        extra = [f"schedule.max_epochs={epochs}", f"+trainer.max_time='00:00:{minutes:02d}:00'"]
        print(f"probe: slowest {slowest} steps/s, {round(left)} s left -> max_epochs={epochs}", flush=True)
    plan["runs"] = run_all(args.out, jobs, args.overrides, extra)
    (args.out / "plan.json").write_text(json.dumps(plan, indent=2))
    print(json.dumps(plan["runs"], indent=2))
    return 0 if all(job["exit"] == 0 for job in plan["runs"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
