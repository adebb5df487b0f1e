"""Training images/s of the quickstart: this checkout against commit bd7f377's code and recipe, side by side.

    python experiments/benchmarks/train_speed.py [--steps 40 120] [--rounds 2] [--baseline bd7f377]

Runs the real msr-train of both (a git worktree of the baseline commit in a temporary folder, imported
through PYTHONPATH with this venv) on the same synthetic data, the two alternating so that the machine's
load hits both alike. Each side trains `experiment=quickstart` for a short and a long number of steps with
no evaluation; the difference of the two wall times, divided by the difference of the images they trained
on, is the training throughput without start-up. Prints a table and a JSON line with the ratio
(this / baseline); run_benchmarks.py collects it. `--variant NAME=OVERRIDE,OVERRIDE` adds this checkout's
quickstart with extra overrides as another side (a lever measured against the same baseline in the same
run), e.g. `--variant batch8=data.batch_size=8`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from msr.files import write_json_atomic

REPO = Path(__file__).resolve().parents[2]
#: Overrides that turn both programs into a bare training run (no evaluation, no figures, CSV logging).
COMMON = ["experiment=quickstart", "final_eval=false", "logger=csv", "trainer.enable_progress_bar=false"]


def baseline_checkout(commit: str, folder: Path) -> Path:
    """Return a git worktree of `commit` under `folder` (created, detached)."""
    path = folder / f"msr-{commit}"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
        check=True,
        capture_output=True,
    )
    return path


def env_with_path(env: dict[str, str], root: Path) -> dict[str, str]:
    """Return `env` importing msr from `root` first."""
    return {**env, "PYTHONPATH": str(root)}


def run_seconds(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Return the wall time of `command`; raise with its output when it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="bd7f377", help="commit of the baseline code and recipe")
    parser.add_argument("--steps", type=int, nargs=2, default=(30, 90), help="short and long run, in steps")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the four runs")
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=OVERRIDE[,OVERRIDE...]: another side to time"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="msr-speed-") as tmp:
        tmp = Path(tmp)
        old_root = baseline_checkout(args.baseline, tmp)
        base_env = {**os.environ, "WANDB_MODE": "disabled"}
        this = [sys.executable, "-m", "msr.cli.train"]
        sides = {
            "baseline": ([sys.executable, "-m", "msr.train"], env_with_path(base_env, old_root), old_root),
            "this": (this, env_with_path(base_env, REPO), REPO),
        }
        extra = {"baseline": [], "this": []}
        for variant in args.variant:
            name, _, overrides = variant.partition("=")
            sides[name] = (this, env_with_path(base_env, REPO), REPO)
            extra[name] = overrides.split(",")
        times: dict[str, dict[int, list[float]]] = {side: {s: [] for s in args.steps} for side in sides}
        for _ in range(args.rounds):
            for steps in args.steps:
                for side, (program, env, cwd) in sides.items():
                    run = tmp / f"{side}-{steps}-{len(times[side][steps])}"
                    command = [*program, *COMMON, *extra[side], f"trainer.max_steps={steps}"]
                    command.append(f"hydra.run.dir={run}")
                    times[side][steps].append(run_seconds(command, env, cwd))
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_root)], check=False)
    print(json.dumps({"wall_seconds": times}), flush=True)  # the raw times first, whatever follows

    short, long = args.steps
    batches = {side: this_batch_size(extra[side]) for side in sides if side != "baseline"}
    batches["baseline"] = 4  # bd7f377's quickstart: data.batch_size=4
    rows = {}
    for side in sides:
        seconds = statistics.median(times[side][long]) - statistics.median(times[side][short])
        per_step = seconds / (long - short)
        images = batches[side]
        rows[side] = {"s_per_step": per_step, "batch": images, "images_per_s": images / per_step}
    for row in rows.values():
        row["ratio"] = row["images_per_s"] / rows["baseline"]["images_per_s"]
    ratio = rows["this"]["ratio"]
    print("| code | overrides | images/step | s/step | training images/s | ratio to baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side, row in rows.items():
        print(
            f"| {side} | {' '.join(extra[side]) or '-'} | {row['batch']} | {row['s_per_step']:.3f} "
            f"| {row['images_per_s']:.2f} | {row['ratio']:.2f}x |"
        )
    print(f"ratio this / baseline: {ratio:.2f}x")
    figures = {"rows": rows, "ratio": ratio, "times": times, "steps": args.steps}
    print(json.dumps(figures))
    if args.json is not None:
        write_json_atomic(figures, args.json, indent=1)


def this_batch_size(overrides: list[str]) -> int:
    """Return the images per step of this checkout's quickstart with `overrides`.

    That is data.batch_size times the processes (trainer.devices under a DDP strategy, e.g. trainer=ddp_cpu).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from msr.cli.common import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quickstart", *overrides])
    processes = int(cfg.trainer.devices) if str(cfg.trainer.strategy).startswith("ddp") else 1
    return int(cfg.data.batch_size) * processes


if __name__ == "__main__":
    main()
