"""Paired bootstrap intervals of a study: each variant against the study's reference, from the saved results.

For every run, its saved `eval/segm_results.json` is evaluated per picture against the annotations it was
evaluated on, twice: ranked by the mask score (what the run reports) and, for MS R-CNN, by the class
score alone (the MaskIoU rescoring switched off). A variant's runs are paired with the reference's by seed;
each bootstrap replicate draws the same val pictures for every run of the study
(`bootstrap.contrast_interval`), and a seed's contrast is averaged over the seeds. Runs of the head-only
protocol also share their seed's trunk, so their boxes and masks are identical and a difference is the
MaskIoU head's alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from msr.errors import EvaluationError
from msr.evaluation.bootstrap import (
    Interval,
    PerImageEval,
    bootstrap_counts,
    coco_ap,
    contrast_interval,
    evaluate_per_image,
)
from msr.evaluation.calibration import class_score_results
from msr.files import read_json
from msr.layout import RunLayout, trunk_record_of
from msr.studies.trunk import read_trunk_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPictures:
    """One run's per-picture evaluations and what it is paired on."""

    seed: int
    trunk: str | None  # the head-only protocol's trunk key
    by_mask_score: PerImageEval
    by_class_score: PerImageEval | None  # None for Mask R-CNN (no predicted IoU)


@dataclass(frozen=True)
class VariantIntervals:
    """A variant's paired comparisons: with the reference (None for the reference itself) and its own
    rescoring gain (None without a predicted IoU)."""

    seeds: int  # seeds paired with the reference
    shared_trunk: bool  # every pair shares its trunk (head-only protocol)
    segm_ap: Interval | None  # segm AP - the reference's
    gain: Interval | None  # segm AP - the same masks ranked by class score
    gain_vs_reference: Interval | None  # gain - the reference's gain


def annotation_file(run: Path, cache: dict[str, str]) -> str:
    """Return the annotation file the run was evaluated on: recorded in `eval/val_metrics.json` when that
    file exists here, else the val annotations of the run's data config (prepared if needed): a run
    trained on another machine (a lent GPU) recorded that machine's path, and the synthetic set of the
    same parameters is the same set everywhere."""
    layout = RunLayout(run)
    recorded = read_json(layout.metrics("val"), "metrics file").get("ann_file")
    if recorded and Path(recorded).is_file():
        return str(recorded)
    if recorded:
        log.warning("%s: recorded annotation file %s is not here; using the run's data config", run, recorded)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config = OmegaConf.load(layout.hydra_config)
    key = OmegaConf.to_yaml(config.data, resolve=True)
    if key not in cache:
        datamodule = instantiate(config.data, _convert_="all")
        datamodule.prepare_data()
        cache[key] = str(datamodule.val_ann)
    return cache[key]


def run_pictures(run: Path, cache: dict[str, str]) -> RunPictures | None:
    """Return the run's per-picture evaluations (None when it saved no segm results)."""
    layout = RunLayout(run)
    results_file = layout.results("segm")
    if not results_file.is_file():
        return None
    results = read_json(results_file, "results file")
    ann_file = annotation_file(run, cache)
    config = yaml.safe_load(layout.hydra_config.read_text()) or {}
    by_mask = evaluate_per_image(results, ann_file)
    recorded = read_json(layout.metrics("val"), "metrics file").get("segm/AP")
    if isinstance(recorded, (int, float)) and abs(coco_ap(by_mask) - recorded) > 1e-6:
        # the pictures resampled must be the ones the run was scored on (a moved run's fallback above)
        raise EvaluationError(
            f"{results_file} scores segm AP {coco_ap(by_mask):.6f} against {ann_file}, but the run recorded "
            f"{recorded:.6f}: these are not the annotations it was evaluated on"
        )
    with_iou = any(r.get("mask_iou") is not None for r in results)
    by_class = evaluate_per_image(class_score_results(results), ann_file) if with_iou else None
    return RunPictures(int(config.get("seed", 0)), read_trunk(run), by_mask, by_class)


def study_intervals(
    variants: list[list[RunPictures]],
    reference: int,
    replicates: int = 1000,
    seed: int = 0,
    resample_seeds: bool = False,
) -> list[VariantIntervals]:
    """Return the intervals of every variant (its runs' RunPictures) against `variants[reference]`.

    With `resample_seeds`, each replicate also redraws the seeds with replacement (a two-level bootstrap:
    seeds, then pictures), so an interval holds the spread between training runs too, not only between
    val pictures: the honest interval for separately trained models (end to end), and a stricter one for
    heads on shared trunks."""
    pictures = [r for runs in variants for r in runs]
    if not pictures:  # no run saved its results: nothing to resample
        return [VariantIntervals(0, False, None, None, None) for _ in variants]
    draws = bootstrap_counts(len(pictures[0].by_mask_score.image_ids), replicates, seed)
    cache: dict[int, np.ndarray] = {}  # each evaluation's replicate APs, shared by all the intervals
    seed_draws: dict[int, np.ndarray] = {}

    def interval(contrasts: list) -> Interval:
        """The contrasts' interval, the seeds redrawn too when asked (the same draws for every count)."""
        count = len(contrasts)
        if resample_seeds and count not in seed_draws:
            seed_draws[count] = bootstrap_counts(count, replicates, seed + 1)  # independent of `draws`
        return contrast_interval(contrasts, draws, cache=cache, seed_draws=seed_draws.get(count))

    reference_runs = {r.seed: r for r in variants[reference]}
    out = []
    for index, runs in enumerate(variants):
        pairs = [(r, reference_runs[r.seed]) for r in runs if r.seed in reference_runs]
        gains = [[(1.0, r.by_mask_score), (-1.0, r.by_class_score)] for r in runs if r.by_class_score]
        segm_ap = gain_diff = None
        if index != reference and pairs:
            segm_ap = interval([[(1.0, a.by_mask_score), (-1.0, b.by_mask_score)] for a, b in pairs])
            if all(a.by_class_score and b.by_class_score for a, b in pairs):
                gain_diff = interval(
                    [[(1.0, a.by_mask_score), (-1.0, a.by_class_score), *_negated(b)] for a, b in pairs]
                )
        shared = bool(pairs) and all(a.trunk is not None and a.trunk == b.trunk for a, b in pairs)
        gain = interval(gains) if gains and len(gains) == len(runs) else None
        out.append(VariantIntervals(len(pairs), shared, segm_ap, gain, gain_diff))
    return out


def _negated(run: RunPictures) -> list[tuple[float, PerImageEval]]:
    """Return the terms of minus the run's rescoring gain."""
    return [(-1.0, run.by_mask_score), (1.0, run.by_class_score)]


def interval_columns(intervals: list[VariantIntervals]) -> tuple[list[str], list[list[Any]]]:
    """Return CSV (columns, rows) of the intervals: estimate, low, high and whether 0 is excluded."""
    names = ("delta segm AP vs reference", "rescoring gain", "delta rescoring gain vs reference")
    columns = ["paired seeds", "shared trunk"]
    for name in names:
        columns += [f"{name}", f"{name} low", f"{name} high", f"{name} excludes 0"]
    rows = []
    for v in intervals:
        row: list[Any] = [v.seeds, v.shared_trunk]
        for interval in (v.segm_ap, v.gain, v.gain_vs_reference):
            row += [float("nan")] * 3 + [""] if interval is None else [
                interval.estimate, interval.low, interval.high, interval.excludes_zero
            ]
        rows.append(row)
    return columns, rows


def describe(interval: Interval | None) -> str:
    """Return a Markdown cell: `+0.0123 [+0.0050, +0.0200]`, bold when the interval excludes 0."""
    if interval is None:
        return "n/a"
    text = f"{interval.estimate:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"
    return f"**{text}**" if interval.excludes_zero else text


def read_trunk(run: Path) -> str | None:
    """Return the head-only protocol's trunk key of a run, None for other end-to-end runs.

    A head-only job names its trunk in run_config.json; the trunk's own run (its Mask R-CNN, the study's
    natural reference) is the run folder beside the cache's trunk record, which holds the key.
    """
    path = RunLayout(run).run_config
    if not path.is_file():
        return None
    record = read_trunk_record(json.loads(path.read_text()))
    if record is not None:
        return record.get("key")
    beside = trunk_record_of(run)
    return json.loads(beside.read_text()).get("key") if beside.is_file() else None
