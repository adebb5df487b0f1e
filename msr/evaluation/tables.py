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

    The rows are bbox AP, segm AP (AP50, AP75, class score only, the rescoring gain, true-IoU upper bound)
    and the MaskIoU calibration figures, each titled as in `metrics.TITLES`; a metric with a 95% interval
    (`<key>_low`, `<key>_high`) shows it after its value.
    """
    rows = []
    for key in SUMMARY_KEYS:
        if key not in metrics or metrics[key] is None:
            continue
        value = format_value(metrics[key])
        if f"{key}_low" in metrics and f"{key}_high" in metrics:
            value += f" [{metrics[key + '_low']:.4f}, {metrics[key + '_high']:.4f}] (95% interval)"
        rows.append((TITLES[key], value))
    return f"\n{title}\n" + markdown_table(["metric", "value"], rows)
