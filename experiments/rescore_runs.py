"""Score finished runs again from their saved results, to add metrics they were trained without.

    python experiments/rescore_runs.py /tmp/study/mask_scoring [more sweep folders ...]

For every job folder under the given folders (as `msr-aggregate` finds them), the saved
`eval/segm_results.json` is scored against the validation annotations of the job's own data config
(`.hydra/config.yaml`) with calibration and the rescoring comparison on (`segm_class_score/*`,
`segm_upper_bound/*`), and written to `eval/scored_metrics.json` in msr-eval's scoring format;
`msr-aggregate` takes the metrics `eval/val_metrics.json` lacks from there. The run's own segm AP is
recomputed as a check: a mismatch (results and annotations that do not belong together) stops the script.
No model is run and `eval/val_metrics.json` is left as it is.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from msr.errors import EvaluationError
from msr.evaluation.scoring import score_results_file
from msr.files import read_json, write_json_atomic
from msr.layout import RunLayout
from msr.studies.aggregate import AggregateError, find_runs

#: Largest |Δ segm AP| between a run's own evaluation and the rescoring of its saved results.
AP_TOLERANCE = 1e-9


def val_annotation_file(run: Path, cache: dict[str, str]) -> str:
    """Return the validation annotation file of the run's data config (the data set prepared if needed)."""
    config = OmegaConf.load(RunLayout(run).hydra_config)
    key = OmegaConf.to_yaml(config.data, resolve=True)
    if key not in cache:
        datamodule = instantiate(config.data, _convert_="all")
        datamodule.prepare_data()
        if not getattr(datamodule, "val_ann", None):
            raise SystemExit(f"{run}: the data config has no validation annotation file")
        cache[key] = str(datamodule.val_ann)
    return cache[key]


def rescore(run: Path, ann_file: str, backend: str) -> dict[str, float]:
    """Score the run's saved segm results again; write and return `eval/scored_metrics.json`'s metrics."""
    layout = RunLayout(run)
    results = layout.results("segm")
    metrics = score_results_file(
        results, ann_file, "segm", backend, print_fn=None, calibration=True, upper_bound=True
    ).metrics
    own = read_json(layout.metrics("val"), "metrics file", EvaluationError).get("segm/AP")
    if own is not None and not math.isclose(own, metrics["segm/AP"], abs_tol=AP_TOLERANCE):
        raise SystemExit(f"{results}: segm AP {metrics['segm/AP']} rescored vs {own} in val_metrics.json")
    scored = {"results": str(results), "ann_file": ann_file, **metrics}
    write_json_atomic(scored, layout.scored_metrics)
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Rescore every finished run under the folders on the command line; print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="multirun sweep folders (or any folders of job folders)")
    parser.add_argument("--backend", default="faster_coco_eval", help="faster_coco_eval or pycocotools")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.folders)
    except AggregateError as err:
        raise SystemExit(f"rescore_runs: {err}") from None
    annotation_files: dict[str, str] = {}
    for run in runs:
        if not RunLayout(run).results("segm").is_file():
            print(f"{run}: no eval/segm_results.json, skipped", file=sys.stderr)
            continue
        m = rescore(run, val_annotation_file(run, annotation_files), args.backend)
        gain = m["segm/AP"] - m.get("segm_class_score/AP", float("nan"))
        class_ap = m.get("segm_class_score/AP", float("nan"))
        print(
            f"{run}: segm AP {m['segm/AP']:.4f}  class score only {class_ap:.4f}  gain {gain:+.4f}  "
            f"upper bound {m['segm_upper_bound/AP']:.4f}"
        )


if __name__ == "__main__":
    main()
