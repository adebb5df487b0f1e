"""Markdown tables of metrics, drawn by `tabulate` (GitHub pipe tables)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from msr.evaluation.metrics import SUMMARY_KEYS, TITLES


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return a GitHub Markdown table of `rows` under `headers`; cells are printed as `str` gives them."""
    cells = [[str(cell) for cell in row] for row in rows]
    return tabulate(cells, headers=list(headers), tablefmt="github", disable_numparse=True)


def format_value(value: Any) -> str:
    """Return a metric value as the tables print it: 4 decimals for a non-integer float, else `str`."""
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:.4f}"
    return f"{value}"


def metrics_table(metrics: Mapping[str, Any], title: str) -> str:
    """Return a newline, `title` and a Markdown table of the `SUMMARY_KEYS` metrics present in `metrics`.

    The rows are bbox AP, segm AP (AP50, AP75, class score only, true-IoU upper bound) and the MaskIoU
    calibration figures, each titled as in `metrics.TITLES`.
    """
    rows = [
        (TITLES[key], format_value(metrics[key]))
        for key in SUMMARY_KEYS
        if key in metrics and metrics[key] is not None
    ]
    return f"\n{title}\n" + markdown_table(["metric", "value"], rows)
