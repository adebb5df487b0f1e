"""Intervals over training runs: what a per-seed paired contrast says about the next training run.

A picture bootstrap holds the trained models fixed. When the two sides of a contrast were trained
separately (end to end, or heads trained separately), the contrast also varies from training run to
training run. Given one paired contrast per seed (d_1 .. d_n, each on the same val pictures) and the
picture-bootstrap variance of their mean (v), `over_runs_interval` is a random-effects t-interval:

    mean(d) ± t(0.975, df) · sqrt(s²/n + v),   s² the sample variance of the d_i,

df by Welch-Satterthwaite (the picture part counted with infinite degrees of freedom). s²/n is the
run-to-run variance of the mean given these pictures, v the picture variance given these runs; their
sum counts the run × picture interaction twice, so the interval errs on the wide side. It assumes the
per-seed contrasts are roughly normal and needs `MIN_SEEDS_T` seeds. Without that assumption,
`sign_interval` gives the order-statistic interval of the median contrast, which reaches 95 % coverage
only from `MIN_SEEDS_DISTRIBUTION_FREE` seeds (with 3 seeds no distribution-free 95 % statement exists:
even [min, max] covers the median with probability 1 - 2/2³ = 0.75).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Seeds below which no t-interval over runs is given (one seed has no run-to-run variance).
MIN_SEEDS_T = 2
#: Seeds below which no distribution-free 95% interval of the median contrast exists.
MIN_SEEDS_DISTRIBUTION_FREE = 6


@dataclass(frozen=True)
class RunInterval:
    """A contrast over training runs: its per-seed values and, when enough seeds allow, a 95% interval.

    `low`/`high` are NaN and `reason` says why when there are fewer than `MIN_SEEDS_T` seeds."""

    per_seed: tuple[float, ...]
    estimate: float
    low: float
    high: float
    df: float
    run_sd: float  # sample SD of the per-seed contrasts (NaN for one seed)
    picture_sd: float  # picture-bootstrap SD of their mean
    p_value: float
    reason: str = ""

    @property
    def seeds(self) -> int:
        """Return the number of per-seed contrasts."""
        return len(self.per_seed)

    @property
    def has_interval(self) -> bool:
        """True when an interval was computed."""
        return not math.isnan(self.low)

    @property
    def excludes_zero(self) -> bool:
        """True when there is an interval and it lies on one side of 0."""
        return self.has_interval and (self.low > 0 or self.high < 0)


def over_runs_interval(
    per_seed: Sequence[float], picture_var: float = 0.0, level: float = 0.95
) -> RunInterval:
    """Return the random-effects t-interval of the mean of `per_seed` contrasts (see the module's text);
    `picture_var` is the picture-bootstrap variance of their mean (0: run-to-run variance only)."""
    values = tuple(float(v) for v in per_seed)
    n = len(values)
    estimate = float(np.mean(values)) if values else float("nan")
    picture_var = max(float(picture_var), 0.0)
    if n < MIN_SEEDS_T:
        reason = f"{n} seed{'s' if n != 1 else ''}: no interval over training runs (needs >= {MIN_SEEDS_T})"
        nan = float("nan")
        return RunInterval(values, estimate, nan, nan, nan, nan, math.sqrt(picture_var), nan, reason)
    run_var = float(np.var(values, ddof=1))
    between = run_var / n
    total = between + picture_var
    df = math.inf if between == 0 else (n - 1) * total**2 / between**2
    scale = math.sqrt(total)
    if scale == 0:
        low = high = estimate
        p_value = 1.0 if estimate == 0 else 0.0
    else:
        quantile = float(stats.t.ppf(0.5 + level / 2, df))  # df = inf: the normal quantile
        low, high = estimate - quantile * scale, estimate + quantile * scale
        p_value = float(min(1.0, 2 * stats.t.sf(abs(estimate) / scale, df)))
    return RunInterval(values, estimate, low, high, df, math.sqrt(run_var), math.sqrt(picture_var), p_value)


def sign_interval(per_seed: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Return the distribution-free interval [d_(k), d_(n+1-k)] of the median per-seed contrast with
    coverage at least `level` (the largest such k), or None when no k gives it (fewer than 6 seeds at 95%)."""
    values = np.sort(np.asarray(per_seed, dtype=np.float64))
    n = values.shape[0]
    best = None
    for k in range(1, n // 2 + 1):
        coverage = 1.0 - 2.0 * stats.binom.cdf(k - 1, n, 0.5)
        if coverage >= level:
            best = k
    if best is None:
        return None
    return float(values[best - 1]), float(values[n - best])


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Return, for each p-value of one family, whether Holm's step-down procedure rejects it at `alpha`
    (NaN p-values are left out of the family and never rejected)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    rejected = [False] * len(p_values)
    for rank, (p, i) in enumerate(indexed):
        if p > alpha / (len(indexed) - rank):
            break
        rejected[i] = True
    return rejected
