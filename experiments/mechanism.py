"""Why the rescoring helps (or not), from finished MS R-CNN runs' saved results (no retraining).

    python experiments/mechanism.py RUN_OR_SWEEP [...] --out experiments/results/mechanism_<study>

For every run folder under the arguments that saved `eval/segm_results.json` with predicted IoUs, computes
`msr.evaluation.mechanism.mechanism` against the annotations the run was scored on, and writes
`<out>.json` (every run's figures, by folder and seed) and `<out>.md` (mean ± SD over the runs, and the
number of runs). Prints the Markdown.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import yaml

from msr.evaluation.mechanism import mechanism
from msr.evaluation.tables import markdown_table
from msr.files import read_json, write_json_atomic, write_text_atomic
from msr.layout import RunLayout
from msr.studies.aggregate import find_runs
from msr.studies.intervals import annotation_file


def run_figures(run: Path, cache: dict[str, str]) -> dict | None:
    """Return the run's diagnostics with its folder and seed (None without segm results or predicted IoUs)."""
    layout = RunLayout(run)
    if not layout.results("segm").is_file():
        return None
    results = read_json(layout.results("segm"), "results file")
    if not any(r.get("mask_iou") is not None for r in results):
        return None
    config = yaml.safe_load(layout.hydra_config.read_text()) if layout.hydra_config.is_file() else {}
    figures = mechanism(results, annotation_file(run, cache))
    return {"folder": str(run), "seed": (config or {}).get("seed"), **figures}


def summary(records: Sequence[dict]) -> str:
    """Return the Markdown table: each figure's mean ± SD over the runs."""
    keys = [k for k in records[0] if k not in ("folder", "seed")]
    rows = []
    for key in keys:
        values = [float(r[key]) for r in records if not math.isnan(float(r[key]))]
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        cell = "n/a" if not values else f"{statistics.fmean(values):.4f}"
        cell += "" if not values or math.isnan(sd) else f" ± {sd:.4f}"
        rows.append([key, cell])
    return f"{len(records)} runs (mean ± SD over runs)\n\n" + markdown_table(["figure", "value"], rows) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Compute the diagnostics of every MS R-CNN run under the folders; write <out>.json and <out>.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", required=True, help="output path without suffix")
    args = parser.parse_args(argv)
    cache: dict[str, str] = {}
    records = [r for r in (run_figures(run, cache) for run in find_runs(args.folders)) if r is not None]
    if not records:
        raise SystemExit("mechanism.py: no run with saved segm results and predicted IoUs under the folders")
    out = Path(args.out)
    write_json_atomic(records, out.with_suffix(".json"), indent=1)
    text = summary(records)
    write_text_atomic(text, out.with_suffix(".md"))
    print(text)


if __name__ == "__main__":
    main()
