"""One table of a study from the output folders of one or more multiruns (no W&B needed).

The command line is `msr-aggregate` (`msr.cli.aggregate`). Every job folder (one holding
`.hydra/overrides.yaml` and `eval/val_metrics.json`) is a run. Runs whose resolved configs
(`.hydra/config.yaml`) are equal apart from the seed and logging settings are one *variant*, even when
they come from different studies (the default MS R-CNN of one study is the same model as that of
another); without a config file, the overrides decide. Each variant becomes a row with mean ± std over
its seeds of the metrics `msr.evaluation.metrics.STUDY_KEYS` lists, titled as in `metrics.TITLES`
(segm AP, bbox AP, segm AP75, the calibration correlations and, when evaluated
(`evaluation.upper_bound=true`), the segm AP of the same masks ranked by the class score alone, the
per-seed gain of the MaskIoU rescoring over it, and the true-IoU upper bound), and the number of seeds.
A variant is named by its overrides (without `study=`, which only picks what a sweep varies). The folds
of a k-fold cross-validation (`data.folds=k data.fold=0..k-1`) pool: runs that differ only in
`data.fold` are one variant, a seed of it is its k fold models, scored on the union of the folds' val
pictures (`msr.studies.folds`). Metrics
missing from `eval/val_metrics.json` are taken from `eval/scored_metrics.json` when present (written by
`experiments/rescore_runs.py` from the saved results, so old runs gain new metrics without retraining).
Writes `<out>.md` and `<out>.csv`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from msr.errors import UserError
from msr.evaluation.metrics import CLASS_SCORE, RESCORING_GAIN, SEGM, STUDY_KEYS, TITLES
from msr.evaluation.tables import markdown_table
from msr.files import write_csv_atomic, write_json_atomic, write_text_atomic
from msr.layout import RunLayout
from msr.studies.folds import Fold, fold_means, fold_of, pooling_note, seeds_by_fold, without_fold
from msr.studies.identity import variant_ignored
from msr.studies.quick_look import cell, terminal_view

if TYPE_CHECKING:
    from msr.studies.intervals import VariantIntervals

#: Overrides that do not name a variant: a study only chooses what its sweep varies.
UNNAMED_KEYS = ("study",)


class AggregateError(UserError):
    """A sweep folder that cannot be read; the message names the file."""


@dataclass
class Variant:
    """The runs of one variant: its overrides and one metrics dict per run (per seed, or per seed and fold
    for the folds of a k-fold cross-validation, which pool: `msr.studies.folds`)."""

    overrides: tuple[str, ...]
    runs: list[dict[str, float]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)  # each run's seed
    folds: list[Fold] = field(default_factory=list)  # each run's fold; empty unless the folds pool
    incomplete: dict[int | None, list[int]] = field(default_factory=dict)  # seeds left out: missing folds
    fold_count: int | None = None  # k of a pooled k-fold variant, None for a variant of one val set

    @property
    def name(self) -> str:
        """Return the variant's overrides as one string ('(defaults)' when none)."""
        return " ".join(self.overrides) or "(defaults)"

    def seed_runs(self) -> list[list[int]]:
        """Return, per seed, the indices of its runs: one run each, or a pooled seed's runs in fold order."""
        if self.fold_count is None:
            return [[i] for i in range(len(self.runs))]
        order: dict[int | None, list[tuple[int, int]]] = {}
        for index, (seed, fold) in enumerate(zip(self.seeds, self.folds)):
            order.setdefault(seed, []).append((fold.index, index))
        return [[i for _, i in sorted(runs)] for runs in order.values()]

    def seed_metrics(self) -> list[dict[str, float]]:
        """Return one metrics dict per seed (a pooled seed's: the mean over its folds)."""
        if self.fold_count is None:
            return list(self.runs)
        return [fold_means([self.runs[i] for i in runs]) for runs in self.seed_runs()]


def _folders_under(root: Path) -> list[Path]:
    """Return `root` and every folder below it, following symbolic links (each real folder once, by the
    first of its paths in sorted order)."""
    seen: set[Path] = set()
    folders = []
    for top, names, _ in os.walk(root, followlinks=True):
        real = Path(top).resolve()
        if real in seen:  # a link back up the tree, or two links to one folder
            names.clear()
            continue
        seen.add(real)
        folders.append(Path(top))
        names.sort()  # a folder reached by several paths is named by the first in sorted order
    return folders


def find_runs(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Return every job folder (with `.hydra/overrides.yaml` and `eval/val_metrics.json`) under `folders`,
    symbolically linked ones included, each once."""
    runs = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise AggregateError(f"{folder}: no such folder")
        runs += sorted(
            run
            for run in _folders_under(folder)
            if RunLayout(run).metrics("val").is_file() and RunLayout(run).overrides.is_file()
        )
    return runs


def _ignored(key: str) -> bool:
    """Return True for an override or dotted config key that does not define a variant."""
    return variant_ignored(key)


def variant_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """Return the overrides that define a variant (seed, logging and Hydra settings removed), sorted."""
    return tuple(sorted(o for o in overrides if not _ignored(o)))


def variant_name(overrides: Sequence[str]) -> tuple[str, ...]:
    """Return the overrides that name a variant: `variant_key` without `study=`."""
    return tuple(o for o in variant_key(overrides) if o.split("=", 1)[0].lstrip("+~") not in UNNAMED_KEYS)


def config_key(config: Any, prefix: str = "") -> tuple[tuple[str, str], ...]:
    """Return the resolved config as sorted (dotted key, JSON value) pairs, without ignored keys and
    without null values: a key that later code added with a null default (`protocol.head_max_epochs`)
    leaves the model of an older run's config, which lacks it, the same."""
    if isinstance(config, dict):
        pairs: list[tuple[str, str]] = []
        for key, value in config.items():
            pairs += config_key(value, f"{prefix}{key}.")
        return tuple(sorted(p for p in pairs if not _ignored(p[0])))
    if config is None:
        return ()
    return ((prefix.rstrip("."), json.dumps(config, sort_keys=True)),)


def _read(path: Path, parse: Any) -> Any:
    """Return `parse(text of path)`; AggregateError naming the file on failure."""
    try:
        return parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise AggregateError(f"{path}: {err}") from err


class LoadedRun(NamedTuple):
    """One job folder as msr-aggregate reads it."""

    key: tuple  # what makes its variant (the resolved config, or the overrides; without data.fold)
    name: tuple[str, ...]  # the overrides that name its variant
    metrics: dict[str, float]
    seed: int | None
    fold: Fold | None  # None unless it is one fold of a k-fold cross-validation


def load_run(run: Path) -> LoadedRun:
    """Return what msr-aggregate needs of one job folder.

    The key is the resolved config (or, without `.hydra/config.yaml`, the overrides), without `data.fold`
    for a fold of a k-fold cross-validation (its folds pool into one variant); the metrics are
    `eval/val_metrics.json` completed from `eval/scored_metrics.json`, plus the derived rescoring gain.
    """
    layout = RunLayout(run)
    overrides = _read(layout.overrides, yaml.safe_load) or []
    metrics = _read(layout.metrics("val"), json.loads)
    if not isinstance(overrides, list) or not isinstance(metrics, dict):
        raise AggregateError(f"{run}: overrides.yaml must hold a list and val_metrics.json an object")
    metrics = {k: float("nan") if v is None else v for k, v in metrics.items()}  # null: no value
    scored_file = layout.scored_metrics
    if scored_file.is_file():
        scored = _read(scored_file, json.loads)
        if not isinstance(scored, dict):
            raise AggregateError(f"{scored_file}: must hold an object")
        metrics = {**{k: v for k, v in scored.items() if isinstance(v, (int, float))}, **metrics}
    if f"{SEGM}AP" in metrics and f"{CLASS_SCORE}AP" in metrics:
        metrics[RESCORING_GAIN] = metrics[f"{SEGM}AP"] - metrics[f"{CLASS_SCORE}AP"]
    overrides = [str(o) for o in overrides]
    config_file = layout.hydra_config
    key: tuple = variant_key(overrides)
    config = None
    if config_file.is_file():
        config = _read(config_file, yaml.safe_load) or {}
        key = config_key(config)
    seed = config.get("seed") if isinstance(config, dict) else _override(overrides, "seed")
    fold = fold_of(config, overrides)
    name = variant_name(overrides)
    if fold is not None:
        key, name = without_fold(key), without_fold(name)
    return LoadedRun(key, name, metrics, None if seed is None else int(float(seed)), fold)


def _override(overrides: Sequence[str], key: str) -> str | None:
    """Return the value of override `key=value` (None when absent)."""
    for item in overrides:
        name, _, value = item.lstrip("+~").partition("=")
        if name == key:
            return value
    return None


def group_runs(runs: Iterable[Path]) -> list[Variant]:
    """Return the variants of `runs`, in order of first appearance, named by their first run's overrides.

    Variants that would share a name but differ in config get the differing config values appended. The
    folds of a k-fold cross-validation pool (`msr.studies.folds`); a seed lacking folds is left out and
    recorded in `Variant.incomplete`.
    """
    variants: dict[tuple, Variant] = {}
    for run in runs:
        loaded = load_run(run)
        variant = variants.setdefault(loaded.key, Variant(loaded.name))
        variant.runs.append(loaded.metrics)
        variant.folders.append(run)
        variant.seeds.append(loaded.seed)
        if loaded.fold is not None:
            variant.folds.append(loaded.fold)
    for variant in variants.values():
        if variant.folds:
            _keep_complete_seeds(variant)
    by_name: dict[tuple[str, ...], list[tuple]] = {}
    for key, variant in variants.items():
        by_name.setdefault(variant.overrides, []).append(key)
    for keys in (k for k in by_name.values() if len(k) > 1):
        shared = set.intersection(*(set(k) for k in keys))
        for key in keys:
            extra = [f"{k}={json.loads(v)}" for k, v in key if (k, v) not in shared]
            variants[key].overrides = (*variants[key].overrides, *extra)
    return list(variants.values())


def _keep_complete_seeds(variant: Variant) -> None:
    """Leave only the runs of the seeds that have every fold in a pooled variant; record the others."""
    variant.fold_count = variant.folds[0].count
    complete, variant.incomplete = seeds_by_fold(variant.name, variant.folders, variant.seeds, variant.folds)
    keep = sorted(i for runs in complete.values() for i in runs)
    variant.runs = [variant.runs[i] for i in keep]
    variant.folders = [variant.folders[i] for i in keep]
    variant.seeds = [variant.seeds[i] for i in keep]
    variant.folds = [variant.folds[i] for i in keep]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return (mean, sample standard deviation; 0 for one value) of the finite values (NaN if none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def present_keys(variants: Sequence[Variant]) -> list[str]:
    """Return the study keys (metrics.STUDY_KEYS) that at least one run of `variants` has."""
    return [key for key in STUDY_KEYS if any(key in r for v in variants for r in v.seed_metrics())]


def study_of(folders: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Variant], tuple[str, ...]]:
    """Return the finished runs under `folders`, their variants (named without the overrides they all
    share) and those shared overrides; AggregateError when there is no finished run."""
    runs = find_runs(folders)
    if not runs:
        raise AggregateError(
            f"no finished runs (eval/val_metrics.json + .hydra/overrides.yaml) under {folders}"
        )
    variants = group_runs(runs)
    return runs, variants, drop_common_overrides(variants)


def quick_look(folders: Sequence[str | os.PathLike]) -> str:
    """Return the study table of the runs under `folders` for a 120-column terminal (nothing written)."""
    runs, variants, common = study_of(folders)
    columns, rows = table_rows(variants)
    shared = f"Overrides common to every variant: {' '.join(common)}\n\n" if common else ""
    head = f"{len(runs)} runs from {', '.join(str(f) for f in folders)}\n\n{shared}"
    pooled = pooling_note(variants)
    return head + terminal_view(columns, rows, present_keys(variants)) + (f"\n\n{pooled}" if pooled else "")


def table_rows(variants: Sequence[Variant]) -> tuple[list[str], list[list]]:
    """Return (columns, rows): variant, seeds, then mean and std over seeds of every metric that any run
    has (a pooled k-fold seed's value: the mean over its folds)."""
    present = present_keys(variants)
    columns = ["variant", "seeds"]
    for key in present:
        columns += [f"{TITLES[key]} mean", f"{TITLES[key]} std"]
    rows = []
    for variant in variants:
        per_seed = variant.seed_metrics()
        row: list = [variant.name, len(per_seed)]
        for key in present:
            row += list(mean_std([r.get(key, float("nan")) for r in per_seed]))
        rows.append(row)
    return columns, rows


def to_markdown(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Return the table as Markdown with `mean ± std` cells (3 decimals; the mean alone for one seed;
    `n/a` without a value)."""
    titles = ["variant", "seeds", *[c.removesuffix(" mean") for c in columns[2::2]]]
    cells = []
    for row in rows:
        stats = [cell(m, s, int(row[1])) for m, s in zip(row[2::2], row[3::2])]
        cells.append([f"`{row[0]}`", row[1], *stats])
    return markdown_table(titles, cells) + "\n"


def drop_common_overrides(variants: Sequence[Variant]) -> tuple[str, ...]:
    """Remove the overrides every variant shares (when there are several) from their names; return them."""
    if len(variants) < 2:
        return ()
    common = set.intersection(*(set(v.overrides) for v in variants))
    for variant in variants:
        variant.overrides = tuple(o for o in variant.overrides if o not in common)
    return tuple(sorted(common))


def aggregate(
    folders: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    reference: str | None = None,
    replicates: int = 1000,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Aggregate the runs under `folders`; write `<out>.md`, `<out>.csv`, `<out>.json` and, with
    intervals, `<out>.png` (`msr.viz.study`); return the paths of the first two.

    With `replicates` > 0 every variant is also compared with the reference variant (the first whose name
    contains `reference`; default the first variant), from the runs' saved results
    (`msr.studies.intervals`): Δ segm AP, Δ class-score AP, Δ bbox AP, its rescoring gain and the gain's
    difference, each with an interval given these trained models (paired bootstrap over the val pictures)
    and one over training runs (per-seed contrasts). `<out>.json` holds every run's metrics by seed, the
    per-seed contrasts and both intervals.
    """
    runs, variants, common = study_of(folders)
    columns, rows = table_rows(variants)
    sources = ", ".join(str(f) for f in folders)
    shared = f"Overrides common to every variant: `{' '.join(common)}`\n\n" if common else ""
    text = f"{len(runs)} runs from {sources}\n\n{shared}" + to_markdown(columns, rows)
    record: dict[str, Any] = {"sources": [str(f) for f in folders], "common overrides": list(common)}
    record["variants"] = [variant_record(v) for v in variants]
    pooled = pooling_note(variants)
    if replicates > 0:
        from msr.studies.intervals import interval_columns, interval_record  # pycocotools: only when needed

        index = reference_index(variants, reference)
        found = paired_intervals(variants, index, replicates, seed)
        extra_columns, extra_rows = interval_columns(found)
        columns += extra_columns
        rows = [row + extra for row, extra in zip(rows, extra_rows)]
        text += "\n" + intervals_markdown(variants, found, index, replicates)
        pooled = pooling_note(variants, [v.pictures for v in found])
        from msr.viz.study import write_study_figure

        title = f"paired with the reference {variants[index].name}" if len(variants[index].name) < 80 else ""
        names = [v.name + (" (reference)" if i == index else "") for i, v in enumerate(variants)]
        write_study_figure(Path(out).with_suffix(".png"), names, found, title)
        record["reference"] = variants[index].name
        record["bootstrap"] = {"replicates": replicates, "seed": seed}
        for entry, intervals in zip(record["variants"], found):
            entry["paired seeds"] = intervals.seeds
            entry["shared trunk"] = intervals.shared_trunk
            entry["class-score ties by run"] = list(intervals.runs)
            entry["val pictures"] = intervals.pictures
            entry["contrasts"] = {k: interval_record(c) for k, c in intervals.contrasts.items()}
    if pooled:
        text += "\n" + pooled
        record["pooled folds note"] = pooled
    out = Path(out)
    md, csv_path = out.with_suffix(".md"), out.with_suffix(".csv")
    write_text_atomic(text, md)
    write_csv_atomic(columns, rows, csv_path)
    write_json_atomic(record, out.with_suffix(".json"))
    return md, csv_path


def variant_record(variant: Variant) -> dict[str, Any]:
    """Return a variant as a JSON-ready dict: its name and, per run, its folder and metrics (the per-seed
    values behind the table's mean ± std)."""
    runs = []
    for index, (folder, metrics) in enumerate(zip(variant.folders, variant.runs)):
        values = {k: metrics[k] for k in STUDY_KEYS if k in metrics}
        fold = {"fold": variant.folds[index].index} if variant.folds else {}
        runs.append({"folder": str(folder), "seed": variant.seeds[index], **fold, **values})
    record: dict[str, Any] = {"variant": variant.name, "seeds": len(variant.seed_runs()), "runs": runs}
    if variant.fold_count is not None:
        record["folds"] = variant.fold_count
        record["seeds left out, missing folds"] = {str(s): f for s, f in variant.incomplete.items()}
    return record


def reference_index(variants: Sequence[Variant], reference: str | None) -> int:
    """Return the index of the reference variant (default 0): the variant named `reference` or, if none
    is, the first one among whose overrides (or in whose name) `reference` occurs."""
    if reference is None:
        return 0
    for matches in (
        lambda v: reference == v.name,
        lambda v: reference in v.overrides,
        lambda v: reference in v.name,
    ):
        for index, variant in enumerate(variants):
            if matches(variant):
                return index
    names = ", ".join(f"`{v.name}`" for v in variants)
    raise AggregateError(f"no variant's name contains {reference!r}; the variants are {names}")


def paired_intervals(
    variants: Sequence[Variant], reference: int, replicates: int, seed: int
) -> list[VariantIntervals]:
    """Return every variant's paired intervals against `variants[reference]`; a pooled k-fold variant's
    seed is its fold runs' evaluations pooled over the union of their val pictures."""
    from msr.studies.intervals import run_pictures, study_intervals
    from msr.studies.pooled_runs import pool_fold_runs

    cache: dict[str, str] = {}
    pictures = []
    for variant in variants:
        if variant.fold_count is None:
            loaded = [run_pictures(folder, cache) for folder in variant.folders]
        else:
            loaded = [
                pool_fold_runs([run_pictures(variant.folders[i], cache) for i in runs])
                for runs in variant.seed_runs()
            ]
        pictures.append([p for p in loaded if p is not None])
    _check_same_pictures(variants, pictures)
    return study_intervals(pictures, reference, replicates, seed)


def _check_same_pictures(variants: Sequence[Variant], pictures: Sequence[Sequence[Any]]) -> None:
    """Raise AggregateError naming two variants whose runs were scored on different val pictures."""
    first: tuple[str, Any] | None = None
    for variant, runs in zip(variants, pictures):
        for run in runs:
            ids = run.by_mask_score.image_ids
            if first is None:
                first = (variant.name, ids)
            elif len(ids) != len(first[1]) or (ids != first[1]).any():
                raise AggregateError(
                    f"`{first[0]}` and `{variant.name}` were scored on different val pictures "
                    f"({len(first[1])} and {len(ids)}): a paired study needs one val set (the folds of a "
                    "k-fold variant pool only with variants of the same data.folds, data.fold_seed and data)"
                )


def intervals_markdown(
    variants: Sequence[Variant], intervals: Sequence[VariantIntervals], reference: int, replicates: int
) -> str:
    """Return the Markdown of the paired contrasts: one table per contrast, each variant's per-seed values,
    its interval given these trained models and its interval over training runs, with raw and Holm verdicts.
    """
    from msr.studies.intervals import QUANTITIES, describe, describe_runs
    from msr.studies.over_runs import MIN_SEEDS_DISTRIBUTION_FREE

    parts = [
        f"Paired contrasts with the reference, `{variants[reference].name}`, 95% intervals. "
        f"*Given these trained models*: {replicates} bootstrap replicates "
        "over the val pictures (the same pictures for every run, the seeds' contrasts averaged); it holds "
        "the trained models fixed. *Over training runs*: a t-interval over the per-seed contrasts with the "
        "picture variance as one component (normal model; it speaks of the next training run). Bold: the "
        "interval excludes 0; ≈: an endpoint is within the Monte-Carlo error of 0 (borderline); Holm: the "
        "verdict adjusted over the variants of the table. A distribution-free interval of the median needs "
        f">= {MIN_SEEDS_DISTRIBUTION_FREE} seeds.\n"
    ]
    for key, title in QUANTITIES:
        rows = []
        for index, (variant, found) in enumerate(zip(variants, intervals)):
            contrast = found.contrasts.get(key)
            if contrast is None:
                continue
            name = f"`{variant.name}`" + (" (reference)" if index == reference else "")
            runs, pictures = contrast.runs, contrast.pictures
            median = "n/a" if contrast.median is None else "[{:+.4f}, {:+.4f}]".format(*contrast.median)
            rows.append([
                name, runs.seeds, "yes" if found.shared_trunk else "no",
                " / ".join(f"{v:+.4f}" for v in runs.per_seed),
                f"{pictures.mean:+.4f}", describe(pictures),
                f"[{pictures.basic_low:+.4f}, {pictures.basic_high:+.4f}]",
                _verdict(pictures.excludes_zero, contrast.holm_pictures),
                describe_runs(runs),
                _verdict(runs.excludes_zero, contrast.holm_runs) if runs.has_interval else "",
                median,
            ])
        if not rows:
            continue
        headers = [
            "variant", "seeds", "same trunk", "per seed", "bootstrap mean", "given these trained models",
            "basic interval", "excludes 0: raw / Holm", "over training runs", "excludes 0: raw / Holm",
            "median, distribution-free",
        ]
        parts.append(f"\n**{title}**\n\n" + markdown_table(headers, rows) + "\n")
    ties = [
        f"`{v.name}` " + " / ".join(str(r["tied class scores"]) for r in found.runs)
        for v, found in zip(variants, intervals) if found.runs
    ]
    if ties:
        parts.append(
            "\nTied class scores (detections whose class score equals another's of their category), per "
            "run: " + "; ".join(ties) + ". The JSON file gives each run's class-score segm AP with the ties "
            "broken against and for the true positives.\n"
        )
    return "".join(parts)


def _verdict(raw: bool, adjusted: bool) -> str:
    """Return `yes / no`-style cells of the raw and Holm-adjusted verdicts."""
    return f"{'yes' if raw else 'no'} / {'yes' if adjusted else 'no'}"
