"""Mutation testing of msr's core: `make mutation` (mutmut 3, the `mutation` optional dependencies).

Each group of core modules is mutated against the fast tests that cover it, in a scratch copy of the
checkout (`.mutation/<group>/`, ignored by git) so that groups never share mutmut's state. mutmut runs, for
every mutant, only the tests that call the mutated function. The outcome of every mutant (killed,
survived, timeout, no test) is written to experiments/mutation/results/<group>.json with the survivors'
diffs; experiments/mutation/README.md reads them.

    python experiments/mutation/run_mutation.py                 # every group
    python experiments/mutation/run_mutation.py bootstrap resume  # some groups
    python experiments/mutation/run_mutation.py --list
    python experiments/mutation/run_mutation.py --summary         # the recorded scores, as a table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRATCH = ROOT / ".mutation"
RESULTS = Path(__file__).resolve().parent / "results"

#: group -> (modules mutated, test files run against them): in-process tests only (a program started as
#: a subprocess would import the unmutated package).
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "maskiou": (
        ["msr/models/maskiou/*"],
        [
            "tests/models/test_maskiou_head.py",
            "tests/models/test_maskiou_loss.py",
            "tests/models/test_maskiou_targets.py",
            "tests/models/test_model.py",
            "tests/models/test_frozen_trunk.py",
            "tests/models/test_maskiou_exact.py",
        ],
    ),
    "roi_heads": (
        ["msr/models/roi_heads.py"],
        [
            "tests/models/test_model.py",
            "tests/models/test_maskiou_targets.py",
            "tests/models/test_frozen_trunk.py",
            "tests/models/test_roi_heads_wiring.py",
        ],
    ),
    "bootstrap": (
        ["msr/evaluation/bootstrap.py"],
        ["tests/evaluation/test_eval_bootstrap.py", "tests/evaluation/test_bootstrap_duplicates.py"],
    ),
    "calibration": (["msr/evaluation/calibration.py"], ["tests/evaluation/test_eval_calibration.py"]),
    "scoring": (["msr/evaluation/scoring.py"], ["tests/evaluation/test_eval_scoring.py"]),
    "intervals": (
        ["msr/studies/intervals.py"],
        [
            "tests/evaluation/test_study_intervals.py",
            "tests/evaluation/test_eval_bootstrap.py",
            "tests/experiments/test_aggregate.py",
        ],
    ),
    "resume": (
        ["msr/training/resume.py", "msr/training/rng_state.py"],
        ["tests/training/test_resume.py"],
    ),
    "compat": (
        ["msr/compat.py"],
        ["tests/config/test_compat.py", "tests/config/test_compat_units.py", "tests/training/test_resume.py"],
    ),
    "checkpoints": (
        ["msr/training/checkpoints.py", "msr/training/checkpoint_io.py"],
        [
            "tests/training/test_checkpoints.py",
            "tests/training/test_checkpoint_files.py",
            "tests/training/test_resume.py",
        ],
    ),
    "coco": (
        ["msr/data/coco.py"],
        [
            "tests/data/test_coco.py",
            "tests/data/test_coco_exact.py",
            "tests/scale_coco/test_annotation_store.py",
        ],
    ),
    "segmentation": (["msr/data/segmentation.py"], ["tests/data/test_segmentation.py"]),
}

#: mutmut's exit codes per mutant -> outcome (mutmut.__main__.status_by_exit_code).
OUTCOMES = {
    1: "killed", 3: "killed", -24: "timeout", 24: "timeout", 152: "timeout", 0: "survived",
    5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious", 36: "timeout", 37: "caught by type check",
    255: "timeout", -11: "segfault", -9: "segfault",
}


def scratch_copy(group: str) -> Path:
    """Return a fresh copy of what the group's tests need: msr, tests, experiments, hydra_plugins and
    pyproject.toml with the group's [tool.mutmut] section."""
    modules, tests = GROUPS[group]
    folder = SCRATCH / group
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    for name in ("msr", "tests", "experiments", "hydra_plugins"):
        shutil.copytree(ROOT / name, folder / name, ignore=skip)
    section = {
        "source_paths": ["msr"],
        "only_mutate": modules,
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:xdist", "-p", "no:randomly", "-q"],
        # what pytest's `pythonpath` names (experiments' scripts, which some tests import) and the launcher
        "also_copy": ["experiments", "hydra_plugins"],
        # each mutant's tests run in a process forked from a fork server that has run no torch op yet
        "process_isolation": "forkserver",
    }
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in section.items()]
    (folder / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n".join(lines) + "\n")
    shared = ROOT.parent / "shared"
    # the tests read ../shared beside the checkout they run from: the copy, or mutmut's copy of it (mutants/)
    for beside in (SCRATCH / "shared", folder / "shared"):
        if shared.is_dir() and not beside.is_symlink():
            beside.symlink_to(shared)
    return folder


def outcomes(folder: Path) -> dict[str, str]:
    """Return {mutant name: outcome} from the .meta files mutmut wrote under `folder`/mutants."""
    found: dict[str, str] = {}
    for meta in sorted((folder / "mutants").rglob("*.meta")):
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            found[name] = "not run" if code is None else OUTCOMES.get(code, f"exit code {code}")
    return found


def diff(folder: Path, mutant: str) -> str:
    """Return mutmut's diff of one mutant."""
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant], cwd=folder, capture_output=True, text=True
    )
    return proc.stdout.strip()


def run_group(group: str, max_children: int, run: bool = True) -> dict:
    """Run mutmut on `group`; return and write its record (score, outcome per mutant, survivors' diffs).

    run=False records what an earlier, interrupted run of the group left in its scratch copy."""
    folder = SCRATCH / group
    start = time.monotonic()
    returncode = None
    output = ""
    if run:
        folder = scratch_copy(group)
        # one thread per process: a process forked while an OpenMP pool is up hangs in its first parallel
        # op, which mutmut would count as a mutant killed by a timeout
        threads = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        proc = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, **threads},
        )
        returncode, output = proc.returncode, proc.stdout + proc.stderr
    found = outcomes(folder)
    counts: dict[str, int] = {}
    for outcome in found.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    killed = sum(n for outcome, n in counts.items() if outcome in ("killed", "timeout"))
    covered = sum(n for outcome, n in counts.items() if outcome in ("killed", "timeout", "survived"))
    record = {
        "group": group,
        "modules": GROUPS[group][0],
        "tests": GROUPS[group][1],
        "mutants": len(found),
        "counts": counts,
        "score": round(killed / (len(found) - counts.get("not run", 0)), 4) if covered else None,  # all run
        "score_covered": round(killed / covered, 4) if covered else None,  # of those some test runs
        "minutes": round((time.monotonic() - start) / 60, 1),
        "mutmut_exit_code": returncode,
        "complete": bool(found) and "not run" not in counts,
        "survivors": {m: diff(folder, m) for m, o in sorted(found.items()) if o in ("survived", "no tests")},
    }
    if returncode not in (0, None) and not found:
        record["mutmut_output"] = output[-4000:]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{group}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def summary() -> str:
    """Return a markdown table of the recorded results: one row per group (score over all mutants, over
    those some test runs, and the counts)."""
    header = "| group | modules | mutants | killed | survived | no test | score | score (tested) |"
    rows = [header, "|---" * 8 + "|"]
    for group in GROUPS:
        path = RESULTS / f"{group}.json"
        if not path.is_file():
            rows.append(f"| {group} | {' '.join(GROUPS[group][0])} | not run | | | | | |")
            continue
        record = json.loads(path.read_text())
        counts = record["counts"]
        killed = counts.get("killed", 0) + counts.get("timeout", 0)
        survived, untested = counts.get("survived", 0), counts.get("no tests", 0)
        total = record["mutants"] - counts.get("not run", 0)
        covered = killed + survived
        if not record.get("complete", True):
            group = f"{group} (partial: {total} of {record['mutants']} mutants)"
        rows.append(
            f"| {group} | {' '.join(record['modules'])} | {total} | {killed} | {survived} | {untested} | "
            f"{killed / total:.1%} | {killed / covered:.1%} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the named groups (default: all); print one line per group; return 0."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("groups", nargs="*", choices=[[], *GROUPS], help="groups to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    parser.add_argument("--summary", action="store_true", help="print the recorded scores and exit")
    parser.add_argument(
        "--record-only", action="store_true", help="record what an interrupted run left in .mutation/<group>"
    )
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    args = parser.parse_args(argv)
    if args.list:
        for group, (modules, tests) in GROUPS.items():
            print(f"{group}: {' '.join(modules)} <- {' '.join(tests)}")
        return 0
    if args.summary:
        print(summary())
        return 0
    for group in args.groups or list(GROUPS):
        record = run_group(group, args.max_children, run=not args.record_only)
        print(f"{group}: score {record['score']} {record['counts']} ({record['minutes']} min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
