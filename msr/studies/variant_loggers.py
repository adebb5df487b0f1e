"""One Lightning logger that hands each head variant of a shared pass its own metrics and loggers.

The head stage trains several jobs' MaskIoU heads in one Trainer. Each job keeps its own loggers (its
csv/metrics.csv, its W&B run) and must see exactly the metrics it would log alone. The module logs a
variant's values under `"<index>|<name>"` (`variant_key`); Lightning's learning-rate monitor names
the heads' parameter groups `"<index>|pg<k>"` (see `group_name`); `VariantLoggers.log_metrics` strips
the prefix and passes each variant's values, with the unprefixed ones (`epoch`), to that variant's
loggers at the same step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

SEPARATOR = "|"


def variant_key(index: int, name: str) -> str:
    """Return the logged name of variant `index`'s metric `name`."""
    return f"{index}{SEPARATOR}{name}"


def group_name(index: int, group: int) -> str:
    """Return the name of variant `index`'s parameter group `group` (1-based), for the lr monitor."""
    return variant_key(index, f"pg{group}")


class VariantLoggers(Logger):
    """Routes prefixed metrics to the loggers of each variant (`loggers[index]`).

    `groups[index]` is the number of optimizer parameter groups of variant `index`: a learning rate
    logged as `lr-AdamW/<index>|pg<k>` reaches it as `lr-AdamW` (one group) or `lr-AdamW/pg<k>`, the
    names Lightning gives a run that trains alone.
    """

    def __init__(self, loggers: Sequence[Sequence[Logger]], groups: Sequence[int]) -> None:
        super().__init__()
        self.variants = [list(v) for v in loggers]
        self.groups = list(groups)

    @property
    def name(self) -> str:
        """Return the logger's name."""
        return "variants"

    @property
    def version(self) -> None:
        """Return None: each variant's loggers have their own versions."""
        return None

    def split(self, metrics: Mapping[str, float]) -> list[dict[str, float]]:
        """Return each variant's metrics: its prefixed values renamed, plus the unprefixed ones."""
        shared = {k: v for k, v in metrics.items() if SEPARATOR not in k}
        out: list[dict[str, float]] = [dict(shared) for _ in self.variants]
        for key, value in metrics.items():
            if SEPARATOR not in key:
                continue
            head, _, tail = key.rpartition("/") if "/" in key.split(SEPARATOR, 1)[0] else ("", "", key)
            index, name = tail.split(SEPARATOR, 1)
            index = int(index)
            if head:  # a parameter group of the lr monitor: `lr-AdamW/<index>|pg<k>`
                name = head if self.groups[index] == 1 else f"{head}/{name}"
            out[index][name] = value
        return out

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log every variant's share of `metrics` to its loggers at `step`."""
        if len(self.variants) == 1 and not any(SEPARATOR in k for k in metrics):
            parts = [dict(metrics)]
        else:
            parts = self.split(metrics)
        for loggers, part in zip(self.variants, parts):
            if len(part) > ("epoch" in part):  # more than the epoch alone
                for logger in loggers:
                    logger.log_metrics(part, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Do nothing: each variant's loggers get their own job's config (`log_variant_hyperparams`)."""

    @rank_zero_only
    def log_variant_hyperparams(self, index: int, params: Mapping[str, Any]) -> None:
        """Log variant `index`'s config to its loggers."""
        for logger in self.variants[index]:
            logger.log_hyperparams(params)

    @rank_zero_only
    def save(self) -> None:
        """Flush every variant's loggers."""
        for logger in self._all():
            logger.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finalize every variant's loggers."""
        for logger in self._all():
            logger.finalize(status)

    def rewind(self, step: int) -> None:
        """Forget every variant's rows beyond `step` (a resumed pass; msr.training.resume.ExactResume)."""
        for logger in self._all():
            rewind = getattr(logger, "rewind", None)
            if callable(rewind):
                rewind(step)

    def _all(self) -> list[Logger]:
        return [logger for loggers in self.variants for logger in loggers]
