"""msr-aggregate: one table of a study from the output folders of one or more multiruns (no W&B needed).

    msr-aggregate multirun/ablation/2026-11-25_10-00-00 [more sweeps ...] --out experiments/results/heads

Every job folder (one holding `.hydra/overrides.yaml` and `eval/val_metrics.json`) is a run. Runs
with the same overrides apart from the seed are one *variant*; each variant becomes a row with
mean ± std over its seeds of segm AP, bbox AP, segm AP75, the calibration correlations and, when
evaluated, the upper bound, and the number of seeds. Writes `<out>.md` and `<out>.csv`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from msr.files import save_csv, write_text_atomic

#: (column title, metrics key) of the table, in order.
COLUMNS = (
    ("segm AP", "segm/AP"),
    ("bbox AP", "bbox/AP"),
    ("segm AP75", "segm/AP75"),
    ("Pearson IoU~class score", "calib/pearson_class_score"),
    ("Pearson IoU~mask score", "calib/pearson_mask_score"),
    ("Spearman IoU~class score", "calib/spearman_class_score"),
    ("Spearman IoU~mask score", "calib/spearman_mask_score"),
    ("segm AP upper bound", "segm_upper_bound/AP"),
)
#: Overrides that do not define a variant.
IGNORED_KEYS = (
    "seed", "hydra.", "logger", "ckpt_path", "trainer.devices", "data.num_workers", "data.cache_dir",
)  # fmt: skip


class AggregateError(ValueError):
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


def find_runs(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Return every job folder (with `.hydra/overrides.yaml` and `eval/val_metrics.json`) under `folders`."""
    runs = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise AggregateError(f"{folder}: no such folder")
        found = sorted(p.parent.parent for p in folder.rglob("eval/val_metrics.json"))
        runs += [run for run in found if (run / ".hydra" / "overrides.yaml").is_file()]
    return runs


def variant_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """Return the overrides that define a variant (seed, logging and Hydra settings removed), sorted."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(IGNORED_KEYS)]
    return tuple(sorted(kept))


def load_run(run: Path) -> tuple[tuple[str, ...], dict[str, float]]:
    """Return (variant key, metrics) of one job folder."""
    overrides_file, metrics_file = run / ".hydra" / "overrides.yaml", run / "eval" / "val_metrics.json"
    try:
        overrides = yaml.safe_load(overrides_file.read_text()) or []
    except (OSError, yaml.YAMLError) as err:
        raise AggregateError(f"{overrides_file}: {err}") from err
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AggregateError(f"{metrics_file}: {err}") from err
    if not isinstance(overrides, list) or not isinstance(metrics, dict):
        raise AggregateError(f"{run}: overrides.yaml must hold a list and val_metrics.json an object")
    return variant_key([str(o) for o in overrides]), metrics


def group_runs(runs: Iterable[Path]) -> list[Variant]:
    """Return the variants of `runs`, in order of first appearance."""
    variants: dict[tuple[str, ...], Variant] = {}
    for run in runs:
        key, metrics = load_run(run)
        variant = variants.setdefault(key, Variant(key))
        variant.runs.append(metrics)
        variant.folders.append(run)
    return list(variants.values())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return (mean, sample standard deviation; 0 for one value) of the finite values (NaN if none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def table_rows(variants: Sequence[Variant]) -> tuple[list[str], list[list]]:
    """Return (columns, rows): variant, seeds, then mean and std of every metric that any run has."""
    present = [(title, key) for title, key in COLUMNS if any(key in r for v in variants for r in v.runs)]
    columns = ["variant", "seeds"]
    for title, _ in present:
        columns += [f"{title} mean", f"{title} std"]
    rows = []
    for variant in variants:
        row: list = [variant.name, len(variant.runs)]
        for _, key in present:
            row += list(mean_std([r.get(key, float("nan")) for r in variant.runs]))
        rows.append(row)
    return columns, rows


def to_markdown(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Return the table as Markdown with `mean ± std` cells (3 decimals)."""
    titles = ["variant", "seeds", *[c.removesuffix(" mean") for c in columns[2::2]]]
    lines = ["| " + " | ".join(titles) + " |", "|" + " --- |" * len(titles)]
    for row in rows:
        cells = [f"`{row[0]}`", str(row[1])]
        for mean, std in zip(row[2::2], row[3::2]):
            cells.append("n/a" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def drop_common_overrides(variants: Sequence[Variant]) -> tuple[str, ...]:
    """Remove the overrides every variant shares (when there are several) from their names; return them."""
    if len(variants) < 2:
        return ()
    common = set.intersection(*(set(v.overrides) for v in variants))
    for variant in variants:
        variant.overrides = tuple(o for o in variant.overrides if o not in common)
    return tuple(sorted(common))


def aggregate(folders: Sequence[str | os.PathLike], out: str | os.PathLike) -> tuple[Path, Path]:
    """Aggregate the runs under `folders`; write `<out>.md` and `<out>.csv`; return their paths."""
    runs = find_runs(folders)
    if not runs:
        raise AggregateError(
            f"no finished runs (eval/val_metrics.json + .hydra/overrides.yaml) under {folders}"
        )
    variants = group_runs(runs)
    common = drop_common_overrides(variants)
    columns, rows = table_rows(variants)
    out = Path(out)
    md, csv_path = out.with_suffix(".md"), out.with_suffix(".csv")
    sources = ", ".join(str(f) for f in folders)
    shared = f"Overrides common to every variant: `{' '.join(common)}`\n\n" if common else ""
    write_text_atomic(f"{len(runs)} runs from {sources}\n\n{shared}" + to_markdown(columns, rows), md)
    save_csv(columns, rows, csv_path)
    return md, csv_path


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point of msr-aggregate."""
    parser = argparse.ArgumentParser(prog="msr-aggregate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", nargs="+", help="multirun sweep folders (or any folders holding job folders)"
    )
    parser.add_argument(
        "--out", required=True, help="output path without suffix: writes <out>.md and <out>.csv"
    )
    args = parser.parse_args(argv)
    try:
        md, _ = aggregate(args.folders, args.out)
    except AggregateError as err:
        print(f"msr-aggregate: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(md.read_text())


if __name__ == "__main__":
    main()
