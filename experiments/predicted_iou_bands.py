"""Mean predicted IoU of a run's detections by their true mask IoU: none (no object of the detection's
class overlaps it), low (0 < IoU < 0.5) and positive (IoU >= 0.5). Reads each run's saved
`eval/segm_results.json` and the annotations it was evaluated on (as msr-aggregate finds them); prints a
Markdown table.

    python experiments/predicted_iou_bands.py RUN [RUN ...]

A head trained only on its RoI's own class (the paper's default target) has never been asked about a
detection of the wrong class; this shows what it predicts for one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from msr.evaluation.calibration import true_mask_ious
from msr.files import read_json
from msr.layout import RunLayout
from msr.studies.intervals import annotation_file

BANDS = {
    "no object of its class (IoU 0)": lambda t: t == 0,
    "0 < IoU < 0.5": lambda t: (t > 0) & (t < 0.5),
    "IoU >= 0.5": lambda t: t >= 0.5,
}


def bands(run: Path) -> list[str]:
    """Return the run's Markdown cells: 'count: mean predicted IoU' per band."""
    results = read_json(RunLayout(run).results("segm"), "results file")
    if not results or results[0].get("mask_iou") is None:
        raise SystemExit(f"{run}: its results carry no predicted IoU (not an MS R-CNN run)")
    true_iou = true_mask_ious(results, annotation_file(run, {}))
    predicted = np.array([r["mask_iou"] for r in results])
    cells = []
    for select in BANDS.values():
        chosen = select(true_iou)
        cells.append(f"{int(chosen.sum())}: {predicted[chosen].mean():.3f}" if chosen.any() else "0: n/a")
    return cells


def main() -> None:
    """Print the table for the runs named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with eval/segm_results.json)")
    runs = parser.parse_args().runs
    print("| run | " + " | ".join(f"{name}: detections: mean predicted IoU" for name in BANDS) + " |")
    print("| --- |" + " --- |" * len(BANDS))
    for run in runs:
        print(f"| {run} | " + " | ".join(bands(run)) + " |")


if __name__ == "__main__":
    main()
