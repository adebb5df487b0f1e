"""msr-aggregate's k-fold pooling: the runs of one variant that differ only in `data.fold`.

With `data.folds=k data.fold=0..k-1`, each fold's model is scored on its own val pictures (disjoint
folds of one pooled set, `msr.data.folds`). Runs whose resolved configs differ only in `data.fold` (the
same `data.folds`, `data.fold_seed` and data root) are one variant: a *seed* of it is the set of its k
fold models with that seed, scored on the union of the folds' val pictures, each picture by the model of
its fold (`msr.studies.pooled_runs`). The study table's per-seed value of a metric is the mean over the
seed's folds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msr.errors import UserError

#: The config key (and override) of the fold a run was scored on; pooled variants drop it from their key.
FOLD_KEY = "data.fold"


@dataclass(frozen=True)
class Fold:
    """Which fold of how many a run was trained without and scored on."""

    index: int
    count: int


def fold_of(config: Mapping[str, Any] | None, overrides: Sequence[str]) -> Fold | None:
    """Return the run's fold from its resolved config (`data.folds`, `data.fold`) or, without a config,
    from its overrides; None when the run is not one fold of a k-fold cross-validation."""
    data = config.get("data") if isinstance(config, Mapping) else None
    if isinstance(data, Mapping):
        if data.get("folds") is None:
            return None
        return Fold(int(data.get("fold", 0) or 0), int(data["folds"]))
    values = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    if values.get("data.folds") in (None, "null"):
        return None
    return Fold(int(values.get(FOLD_KEY, 0)), int(values["data.folds"]))


def without_fold(pairs: Sequence[Any]) -> tuple:
    """Return a variant key (config pairs `(key, value)` or overrides `key=value`) without `data.fold`."""
    def is_fold(item: Any) -> bool:
        key = item[0] if isinstance(item, tuple) else str(item).split("=", 1)[0].lstrip("+~")
        return key == FOLD_KEY

    return tuple(p for p in pairs if not is_fold(p))


def seeds_by_fold(
    variant_name: str, folders: Sequence[Path], seeds: Sequence[int | None], folds: Sequence[Fold]
) -> tuple[dict[int | None, list[int]], dict[int | None, list[int]]]:
    """Return ({seed: indices of its runs in fold order} for the seeds with every fold, {seed: the folds
    it lacks} for the others); UserError naming both folders when a seed has one fold twice."""
    by_seed: dict[int | None, dict[int, int]] = {}
    for index, (seed, fold) in enumerate(zip(seeds, folds)):
        runs = by_seed.setdefault(seed, {})
        if fold.index in runs:
            raise UserError(
                f"variant `{variant_name}`: seed {seed} has fold {fold.index} twice "
                f"({folders[runs[fold.index]]} and {folders[index]}); leave one of them out of the folders "
                "given"
            )
        runs[fold.index] = index
    count = folds[0].count
    complete, incomplete = {}, {}
    for seed, runs in by_seed.items():
        missing = [k for k in range(count) if k not in runs]
        if missing:
            incomplete[seed] = missing
        else:
            complete[seed] = [runs[k] for k in range(count)]
    return complete, incomplete


def fold_means(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Return, per number that every run has (a metric), the mean over the runs (the folds of one seed)."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    keys = [k for k in runs[0] if all(k in r and number(r[k]) for r in runs)]
    return {k: statistics.fmean(float(r[k]) for r in runs) for k in keys}


def pooling_note(variants: Sequence[Any], pictures: Sequence[int | None] | None = None) -> str:
    """Return the Markdown lines saying which variants pooled their folds ('' when none did): k, the
    seeds, the number of val pictures resampled (`pictures`, per variant, when the intervals were
    computed) and the seeds left out for missing folds."""
    lines = []
    for index, variant in enumerate(variants):
        if variant.fold_count is None:
            continue
        seeds = len(variant.seed_runs())
        count = pictures[index] if pictures is not None else None
        text = (
            f"`{variant.name}`: {variant.fold_count} folds pooled, {seeds} seed{'s' if seeds != 1 else ''}"
            f" of {variant.fold_count} fold models each"
        )
        if count:
            text += f"; {count} val pictures, the union of the folds' val pictures"
            text += ", each scored by its fold's model"
        if variant.incomplete:
            left = "; ".join(
                f"seed {s} (missing fold {', '.join(map(str, f))})" for s, f in variant.incomplete.items()
            )
            text += f"; left out: {left}"
        lines.append(f"- {text}")
    if not lines:
        return ""
    return (
        "K-fold cross-validation: runs that differ only in `data.fold` are one variant. Its mean ± std is "
        "over seeds of the mean over a seed's folds; its intervals resample every picture of the union "
        "and count a seed as its fold models.\n\n" + "\n".join(lines) + "\n"
    )
