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
A variant is named by its overrides (without `study=`, which only picks what a sweep varies). Metrics
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
from typing import TYPE_CHECKING, Any

import yaml

from msr.errors import UserError
from msr.evaluation.metrics import CLASS_SCORE, RESCORING_GAIN, SEGM, STUDY_KEYS, TITLES
from msr.evaluation.tables import markdown_table
from msr.files import write_csv_atomic, write_text_atomic
from msr.layout import RunLayout
from msr.studies.identity import variant_ignored

if TYPE_CHECKING:
    from msr.studies.intervals import VariantIntervals

#: Overrides that do not name a variant: a study only chooses what its sweep varies.
UNNAMED_KEYS = ("study",)


class AggregateError(UserError):
    """A sweep folder that cannot be read; the message names the file."""


@dataclass
class Variant:
    """The runs of one variant: its overrides and one metrics dict per seed."""

    overrides: tuple[str, ...]
    runs: list[dict[str, float]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Return the variant's overrides as one string ('(defaults)' when none)."""
        return " ".join(self.overrides) or "(defaults)"


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


def load_run(run: Path) -> tuple[tuple, tuple[str, ...], dict[str, float]]:
    """Return (variant key, variant name, metrics) of one job folder.

    The key is the resolved config (or, without `.hydra/config.yaml`, the overrides); the metrics are
    `eval/val_metrics.json` completed from `eval/scored_metrics.json`, plus the derived rescoring gain.
    """
    layout = RunLayout(run)
    overrides = _read(layout.overrides, yaml.safe_load) or []
    metrics = _read(layout.metrics("val"), json.loads)
    if not isinstance(overrides, list) or not isinstance(metrics, dict):
        raise AggregateError(f"{run}: overrides.yaml must hold a list and val_metrics.json an object")
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
    if config_file.is_file():
        key = config_key(_read(config_file, yaml.safe_load) or {})
    return key, variant_name(overrides), metrics


def group_runs(runs: Iterable[Path]) -> list[Variant]:
    """Return the variants of `runs`, in order of first appearance, named by their first run's overrides.

    Variants that would share a name but differ in config get the differing config values appended.
    """
    variants: dict[tuple, Variant] = {}
    for run in runs:
        key, name, metrics = load_run(run)
        variant = variants.setdefault(key, Variant(name))
        variant.runs.append(metrics)
        variant.folders.append(run)
    by_name: dict[tuple[str, ...], list[tuple]] = {}
    for key, variant in variants.items():
        by_name.setdefault(variant.overrides, []).append(key)
    for keys in (k for k in by_name.values() if len(k) > 1):
        shared = set.intersection(*(set(k) for k in keys))
        for key in keys:
            extra = [f"{k}={json.loads(v)}" for k, v in key if (k, v) not in shared]
            variants[key].overrides = (*variants[key].overrides, *extra)
    return list(variants.values())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return (mean, sample standard deviation; 0 for one value) of the finite values (NaN if none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def table_rows(variants: Sequence[Variant]) -> tuple[list[str], list[list]]:
    """Return (columns, rows): variant, seeds, then mean and std of every metric that any run has."""
    present = [key for key in STUDY_KEYS if any(key in r for v in variants for r in v.runs)]
    columns = ["variant", "seeds"]
    for key in present:
        columns += [f"{TITLES[key]} mean", f"{TITLES[key]} std"]
    rows = []
    for variant in variants:
        row: list = [variant.name, len(variant.runs)]
        for key in present:
            row += list(mean_std([r.get(key, float("nan")) for r in variant.runs]))
        rows.append(row)
    return columns, rows


def to_markdown(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Return the table as Markdown with `mean ± std` cells (3 decimals; `n/a` without a value)."""
    titles = ["variant", "seeds", *[c.removesuffix(" mean") for c in columns[2::2]]]
    cells = []
    for row in rows:
        stats = ["n/a" if math.isnan(m) else f"{m:.3f} ± {s:.3f}" for m, s in zip(row[2::2], row[3::2])]
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
    resample_seeds: bool = False,
) -> tuple[Path, Path]:
    """Aggregate the runs under `folders`; write `<out>.md` and `<out>.csv`; return their paths.

    With `replicates` > 0 every variant is also compared with the reference variant (the first whose name
    contains `reference`; default the first variant) by a paired bootstrap over the val pictures
    (`msr.studies.intervals`): its segm AP difference, its rescoring gain and the gain's difference;
    `resample_seeds` redraws the seeds too (two-level bootstrap: the spread between training runs counts).
    """
    runs = find_runs(folders)
    if not runs:
        raise AggregateError(
            f"no finished runs (eval/val_metrics.json + .hydra/overrides.yaml) under {folders}"
        )
    variants = group_runs(runs)
    common = drop_common_overrides(variants)
    columns, rows = table_rows(variants)
    sources = ", ".join(str(f) for f in folders)
    shared = f"Overrides common to every variant: `{' '.join(common)}`\n\n" if common else ""
    text = f"{len(runs)} runs from {sources}\n\n{shared}" + to_markdown(columns, rows)
    if replicates > 0:
        from msr.studies.intervals import interval_columns  # pycocotools and torch: only when needed

        index = reference_index(variants, reference)
        found = paired_intervals(variants, index, replicates, seed, resample_seeds)
        extra_columns, extra_rows = interval_columns(found)
        columns += extra_columns
        rows = [row + extra for row, extra in zip(rows, extra_rows)]
        text += "\n" + intervals_markdown(variants, found, index, replicates, resample_seeds)
    out = Path(out)
    md, csv_path = out.with_suffix(".md"), out.with_suffix(".csv")
    write_text_atomic(text, md)
    write_csv_atomic(columns, rows, csv_path)
    return md, csv_path


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
    variants: Sequence[Variant], reference: int, replicates: int, seed: int, resample_seeds: bool = False
) -> list[VariantIntervals]:
    """Return every variant's paired bootstrap intervals against `variants[reference]`."""
    from msr.studies.intervals import run_pictures, study_intervals

    cache: dict[str, str] = {}
    pictures = []
    for variant in variants:
        loaded = [run_pictures(folder, cache) for folder in variant.folders]
        pictures.append([p for p in loaded if p is not None])
    return study_intervals(pictures, reference, replicates, seed, resample_seeds)


def intervals_markdown(
    variants: Sequence[Variant],
    intervals: Sequence[VariantIntervals],
    reference: int,
    replicates: int,
    resample_seeds: bool = False,
) -> str:
    """Return the Markdown table of the paired differences (bold: the 95% interval excludes 0)."""
    from msr.studies.intervals import describe

    rows = []
    for index, (variant, found) in enumerate(zip(variants, intervals)):
        name = f"`{variant.name}`" + (" (reference)" if index == reference else "")
        trunk = "yes" if found.shared_trunk else "no"
        rows.append([name, found.seeds, trunk, describe(found.segm_ap), describe(found.gain),
                     describe(found.gain_vs_reference)])
    headers = [
        "variant", "paired seeds", "same trunk", "Δ segm AP vs reference", "rescoring gain",
        "Δ rescoring gain vs reference",
    ]
    seeds = (
        "seeds paired, and redrawn with replacement in every replicate (two-level bootstrap: the intervals "
        "hold the spread between training runs too)"
        if resample_seeds
        else "seeds paired and averaged"
    )
    intro = (
        f"Paired differences with 95% intervals ({replicates} bootstrap replicates over the val pictures, "
        f"the same pictures for every run, {seeds}; bold: the interval excludes 0):\n\n"
    )
    return intro + markdown_table(headers, rows) + "\n"
