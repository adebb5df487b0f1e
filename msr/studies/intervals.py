"""Paired intervals of a study: each variant against the study's reference, from the saved results.

For every run, its saved `eval/segm_results.json` is evaluated per picture against the annotations it was
evaluated on, twice: ranked by the mask score (what the run reports) and, for MS R-CNN, by the class
score alone (the MaskIoU rescoring switched off); `eval/bbox_results.json`, when saved, once more. A
variant's runs are paired with the reference's by seed, and each contrast (Δ segm AP, Δ class-score AP,
Δ bbox AP, the rescoring gain, the gain's difference) gets two intervals:

- **given these trained models**: a paired bootstrap over the val pictures (the same pictures for every
  run, the seeds' contrasts averaged; `bootstrap.contrast_interval`), with its bootstrap mean, basic
  interval, p-value and Monte-Carlo borderline mark;
- **over training runs**: a random-effects t-interval over the per-seed contrasts with the picture
  variance as one component (`over_runs.over_runs_interval`), and the distribution-free interval of the
  median contrast when there are enough seeds (`over_runs.sign_interval`).

Verdicts are also given Holm-adjusted over the study's variants (one family per contrast and kind of
interval). Runs of the head-only protocol share their seed's trunk, so their boxes and masks are
identical and a difference is the MaskIoU head's alone; the heads were still trained separately, so the
interval over runs is the one that speaks of the next training run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    contrast_replicates,
    evaluate_per_image,
    interval_of_replicates,
)
from msr.evaluation.calibration import class_score_results
from msr.evaluation.ties import tie_bounds, tied_detections
from msr.files import read_json
from msr.layout import RunLayout, trunk_record_of
from msr.studies.over_runs import RunInterval, holm, over_runs_interval, sign_interval
from msr.studies.trunk import read_trunk_record

log = logging.getLogger(__name__)

#: The contrasts of a study, as (key, title): the CSV's column stems and the Markdown's headings.
QUANTITIES = (
    ("delta segm AP vs reference", "Δ segm AP vs reference"),
    ("delta class-score AP vs reference", "Δ segm AP ranked by class score vs reference"),
    ("delta bbox AP vs reference", "Δ bbox AP vs reference"),
    ("rescoring gain", "rescoring gain (segm AP − the same masks ranked by class score)"),
    ("delta rescoring gain vs reference", "Δ rescoring gain vs reference"),
)


@dataclass(frozen=True)
class RunPictures:
    """One run's per-picture evaluations, what it is paired on, and its tied class scores."""

    seed: int
    trunk: str | None  # the head-only protocol's trunk key
    by_mask_score: PerImageEval
    by_class_score: PerImageEval | None  # None for Mask R-CNN (no predicted IoU)
    bbox: PerImageEval | None = None  # None when the run saved no bbox results
    tied_class_scores: int = 0  # detections whose class score ties another of their category
    class_score_tie_bounds: tuple[float, float] = (float("nan"), float("nan"))  # class-score segm AP range

    @property
    def class_ranked(self) -> PerImageEval:
        """Return the masks ranked by the class score (Mask R-CNN's own ranking when it has no other)."""
        return self.by_class_score if self.by_class_score is not None else self.by_mask_score


@dataclass(frozen=True)
class ContrastIntervals:
    """One contrast of a variant: the interval given these trained models, the one over training runs,
    the distribution-free interval of the median (None below 6 seeds) and the Holm-adjusted verdicts."""

    pictures: Interval
    runs: RunInterval
    median: tuple[float, float] | None
    holm_pictures: bool = False
    holm_runs: bool = False


@dataclass(frozen=True)
class VariantIntervals:
    """A variant's paired contrasts (by `QUANTITIES` key; a missing key: not defined for this variant)."""

    seeds: int  # seeds paired with the reference
    shared_trunk: bool  # every pair shares its trunk (head-only protocol)
    contrasts: dict[str, ContrastIntervals] = field(default_factory=dict)
    runs: tuple[dict[str, Any], ...] = ()  # per run: seed, tied class scores, class-score AP tie bounds
    pictures: int = 0  # val pictures resampled (a pooled k-fold variant: the union of its folds')

    @property
    def segm_ap(self) -> ContrastIntervals | None:
        """Return the Δ segm AP contrast (None for the reference)."""
        return self.contrasts.get("delta segm AP vs reference")

    @property
    def gain(self) -> ContrastIntervals | None:
        """Return the rescoring gain (None without a predicted IoU)."""
        return self.contrasts.get("rescoring gain")

    @property
    def gain_vs_reference(self) -> ContrastIntervals | None:
        """Return the gain's difference to the reference's gain."""
        return self.contrasts.get("delta rescoring gain vs reference")


def annotation_file(run: Path, cache: dict[str, str]) -> str:
    """Return the annotation file the run was evaluated on: recorded in `eval/val_metrics.json` when that
    file exists here, else the val annotations of the run's data config (prepared if needed): a run
    trained on another machine (a GPU machine) recorded that machine's path, and the synthetic set of the
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
    class_ranked = by_class if by_class is not None else by_mask
    bbox_file = layout.results("bbox")
    bbox = None
    if bbox_file.is_file():
        boxes = read_json(bbox_file, "results file")
        bbox = evaluate_per_image(boxes, ann_file, "bbox", list(by_mask.image_ids))
    return RunPictures(
        int(config.get("seed", 0)), read_trunk(run), by_mask, by_class, bbox,
        tied_detections(class_ranked), tie_bounds(class_ranked),
    )


#: A term list of one seed's contrast, from (variant run, reference run); None: not defined for the pair.
_Terms = Callable[[RunPictures, RunPictures], list[tuple[float, PerImageEval]] | None]


def _gain_terms(run: RunPictures) -> list[tuple[float, PerImageEval]] | None:
    """Return the terms of the run's rescoring gain (None without a predicted IoU)."""
    if run.by_class_score is None:
        return None
    return [(1.0, run.by_mask_score), (-1.0, run.by_class_score)]


def _paired_terms() -> dict[str, _Terms]:
    """Return, by `QUANTITIES` key, how a (variant run, reference run) pair makes its contrast's terms."""

    def gain_diff(a: RunPictures, b: RunPictures) -> list | None:
        ga, gb = _gain_terms(a), _gain_terms(b)
        return None if ga is None or gb is None else [*ga, *((-w, e) for w, e in gb)]

    return {
        "delta segm AP vs reference": lambda a, b: [(1.0, a.by_mask_score), (-1.0, b.by_mask_score)],
        "delta class-score AP vs reference": lambda a, b: [(1.0, a.class_ranked), (-1.0, b.class_ranked)],
        "delta bbox AP vs reference": (
            lambda a, b: None if a.bbox is None or b.bbox is None else [(1.0, a.bbox), (-1.0, b.bbox)]
        ),
        "delta rescoring gain vs reference": gain_diff,
    }


def _contrast(
    terms: list[list[tuple[float, PerImageEval]]], draws: np.ndarray, cache: dict
) -> ContrastIntervals:
    """Return both intervals of one contrast from its per-seed terms."""
    full, replicates = contrast_replicates(terms, draws, cache)
    mean_replicates = replicates.mean(axis=0)
    pictures = interval_of_replicates(float(full.mean()), mean_replicates)
    picture_var = float(np.var(mean_replicates, ddof=1)) if len(mean_replicates) > 1 else 0.0
    runs = over_runs_interval(full, picture_var)
    return ContrastIntervals(pictures, runs, sign_interval(full))


def study_intervals(
    variants: list[list[RunPictures]], reference: int, replicates: int = 1000, seed: int = 0
) -> list[VariantIntervals]:
    """Return the intervals of every variant (its runs' RunPictures) against `variants[reference]`, with
    Holm-adjusted verdicts over the variants of each contrast."""
    pictures = [r for runs in variants for r in runs]
    if not pictures:  # no run saved its results: nothing to resample
        return [VariantIntervals(0, False) for _ in variants]
    draws = bootstrap_counts(len(pictures[0].by_mask_score.image_ids), replicates, seed)
    cache: dict[int, np.ndarray] = {}  # each evaluation's replicate APs, shared by all the intervals
    reference_runs = {r.seed: r for r in variants[reference]}
    out = []
    for index, runs in enumerate(variants):
        pairs = [(r, reference_runs[r.seed]) for r in runs if r.seed in reference_runs]
        contrasts: dict[str, ContrastIntervals] = {}
        if index != reference and pairs:
            for key, make in _paired_terms().items():
                terms = [make(a, b) for a, b in pairs]
                if all(t is not None for t in terms):
                    contrasts[key] = _contrast(terms, draws, cache)
        gains = [_gain_terms(r) for r in runs]
        if gains and all(g is not None for g in gains):
            contrasts["rescoring gain"] = _contrast(gains, draws, cache)
        shared = bool(pairs) and all(a.trunk is not None and a.trunk == b.trunk for a, b in pairs)
        per_run = tuple(
            {"seed": r.seed, "tied class scores": r.tied_class_scores,
             "class-score segm AP, ties against / for true positives": list(r.class_score_tie_bounds)}
            for r in runs
        )
        count = len(runs[0].by_mask_score.image_ids) if runs else 0
        out.append(VariantIntervals(len(pairs), shared, contrasts, per_run, count))
    return _with_holm(out)


def _with_holm(found: list[VariantIntervals]) -> list[VariantIntervals]:
    """Return `found` with each contrast's Holm verdicts, one family per contrast and kind of interval."""
    for key, _ in QUANTITIES:
        holders = [v for v in found if key in v.contrasts]
        by_pictures = holm([v.contrasts[key].pictures.p_value for v in holders])
        by_runs = holm([v.contrasts[key].runs.p_value for v in holders])
        for variant, pic, run in zip(holders, by_pictures, by_runs):
            variant.contrasts[key] = replace(variant.contrasts[key], holm_pictures=pic, holm_runs=run)
    return found


def _csv_cells(found: ContrastIntervals | None) -> list[Any]:
    """Return one contrast's CSV cells (see `interval_columns`)."""
    if found is None:
        nan = float("nan")
        return [nan] * 8 + ["", "", ""] + [nan] * 4 + ["", "", nan, nan, ""]
    p, r = found.pictures, found.runs
    median = found.median or (float("nan"), float("nan"))
    return [
        p.estimate, p.low, p.high, p.mean, p.basic_low, p.basic_high, p.p_value, p.replicates,
        p.excludes_zero, p.borderline, found.holm_pictures,
        r.low, r.high, r.df, r.run_sd,
        r.excludes_zero if r.has_interval else "", found.holm_runs if r.has_interval else "",
        median[0], median[1], ";".join(f"{v:.6f}" for v in r.per_seed),
    ]


def interval_columns(intervals: list[VariantIntervals]) -> tuple[list[str], list[list[Any]]]:
    """Return CSV (columns, rows): per contrast, the interval given these trained models (estimate, low,
    high, bootstrap mean, basic low/high, p, replicates, excludes 0, borderline, Holm), the interval over
    training runs (low, high, df, run SD, excludes 0, Holm), the median's distribution-free interval and
    the per-seed values (`;`-separated)."""
    columns = ["paired seeds", "shared trunk"]
    for name, _ in QUANTITIES:
        columns += [
            name, f"{name} low", f"{name} high", f"{name} bootstrap mean", f"{name} basic low",
            f"{name} basic high", f"{name} p", f"{name} replicates", f"{name} excludes 0",
            f"{name} borderline", f"{name} excludes 0 Holm",
            f"{name} over runs low", f"{name} over runs high", f"{name} over runs df", f"{name} run SD",
            f"{name} over runs excludes 0", f"{name} over runs excludes 0 Holm",
            f"{name} median low", f"{name} median high", f"{name} per seed",
        ]
    rows = []
    for v in intervals:
        row: list[Any] = [v.seeds, v.shared_trunk]
        for name, _ in QUANTITIES:
            row += _csv_cells(v.contrasts.get(name))
        rows.append(row)
    return columns, rows


def interval_record(found: ContrastIntervals) -> dict[str, Any]:
    """Return one contrast as a JSON-ready dict: both intervals, the per-seed values and the verdicts."""
    p, r = found.pictures, found.runs
    return {
        "per seed": list(r.per_seed),
        "given these trained models": {
            "estimate": p.estimate, "bootstrap mean": p.mean, "percentile 95%": [p.low, p.high],
            "basic 95%": [p.basic_low, p.basic_high], "p": p.p_value, "replicates": p.replicates,
            "excludes 0": p.excludes_zero, "borderline": p.borderline,
            "excludes 0, Holm": found.holm_pictures,
        },
        "over training runs": {
            "seeds": r.seeds, "estimate": r.estimate,
            "t 95%": [r.low, r.high] if r.has_interval else None, "df": r.df, "run SD": r.run_sd,
            "picture SD": r.picture_sd, "p": r.p_value, "excludes 0": r.excludes_zero,
            "excludes 0, Holm": found.holm_runs, "note": r.reason,
            "median, distribution-free 95%": list(found.median) if found.median else None,
        },
    }


def describe(interval: Interval | None) -> str:
    """Return a Markdown cell: `+0.0123 [+0.0050, +0.0200]`, bold when the interval excludes 0, `≈` when
    an endpoint is within the Monte-Carlo error of 0 (borderline)."""
    if interval is None:
        return "n/a"
    text = f"{interval.estimate:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"
    text = f"**{text}**" if interval.excludes_zero else text
    return text + (" ≈" if interval.borderline else "")


def describe_runs(found: RunInterval) -> str:
    """Return a Markdown cell for the interval over runs, or why there is none."""
    if not found.has_interval:
        return found.reason
    text = f"{found.estimate:+.4f} [{found.low:+.4f}, {found.high:+.4f}]"
    return f"**{text}**" if found.excludes_zero else text


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
