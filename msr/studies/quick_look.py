"""msr-aggregate's view for a terminal: the study table narrow enough for 120 columns (short titles and
variant labels, each explained in a legend; tables split by columns when needed), no "±" for one seed,
and a line naming the study columns that no run has and why."""

from __future__ import annotations

import math
from collections.abc import Sequence

from msr.evaluation.metrics import CALIB, CLASS_SCORE, RESCORING_GAIN, STUDY_KEYS, TITLES, UPPER_BOUND

#: The terminal's width the view fits in.
WIDTH = 120
#: Variant names longer than this are shown as V1, V2, ... with the name in the legend.
MAX_NAME = 28

#: Short column titles (the legend gives the long ones).
SHORT: dict[str, str] = {
    "segm/AP": "segm AP",
    "bbox/AP": "bbox AP",
    "segm/AP75": "segm AP75",
    f"{CALIB}pearson_class_score": "r cls",
    f"{CALIB}pearson_mask_score": "r mask",
    f"{CALIB}spearman_class_score": "rho cls",
    f"{CALIB}spearman_mask_score": "rho mask",
    f"{CALIB}pearson_pred_iou_positive": "r IoU+",
    f"{CLASS_SCORE}AP": "AP cls only",
    RESCORING_GAIN: "gain",
    f"{UPPER_BOUND}AP": "AP upper",
}

#: Why a study column can be missing from every run.
WHY_MISSING: dict[str, str] = {
    f"{CLASS_SCORE}AP": "the runs were evaluated without evaluation.upper_bound=true; "
    "experiments/rescore_runs.py adds them from the saved results",
    RESCORING_GAIN: "it needs the class-score-only AP",
    f"{UPPER_BOUND}AP": "the runs were evaluated without evaluation.upper_bound=true; "
    "experiments/rescore_runs.py adds them from the saved results",
}
_CALIBRATION = "the runs were evaluated without evaluation.calibration, or are all Mask R-CNN"


def cell(mean: float, std: float, seeds: int) -> str:
    """Return `mean ± std` (3 decimals), the mean alone for one seed, or `n/a` without a value."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if seeds < 2 else f"{mean:.3f} ± {std:.3f}"


def missing_line(present: Sequence[str]) -> str:
    """Return a line naming the study columns no run has and why ('' when none is missing)."""
    gone = [key for key in STUDY_KEYS if key not in present]
    if not gone:
        return ""
    by_reason: dict[str, list[str]] = {}
    for key in gone:
        default = _CALIBRATION if key.startswith(CALIB) else "not in any eval/val_metrics.json"
        by_reason.setdefault(WHY_MISSING.get(key, default), []).append(TITLES[key])
    reasons = [f"{', '.join(titles)}: {reason}" for reason, titles in by_reason.items()]
    return "Columns left out, no run has them. " + ". ".join(reasons) + "."


def _render(headers: list[str], rows: list[list[str]]) -> str:
    """Return a plain aligned table (a Markdown table without its outer pipes' padding waste)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def terminal_view(columns: Sequence[str], rows: Sequence[Sequence], keys: Sequence[str]) -> str:
    """Return the study table (`aggregate.table_rows`' columns and rows, whose metrics are `keys`) for a
    120-column terminal: short titles, variants labelled V1... when their names are long, a legend, tables
    split by columns when they would be wider, and the line on missing columns."""
    names = [str(row[0]) for row in rows]
    long_names = any(len(n) > MAX_NAME for n in names)
    labels = [f"V{i + 1}" for i in range(len(rows))] if long_names else names
    stats = [[cell(m, s, int(row[1])) for m, s in zip(row[2::2], row[3::2])] for row in rows]
    titles = [SHORT.get(k, TITLES.get(k, k)) for k in keys]
    lead = ["variant", "seeds"]
    lead_cells = [[label, str(row[1])] for label, row in zip(labels, rows)]

    def part(start: int, end: int) -> str:
        return _render(lead + titles[start:end], [a + b[start:end] for a, b in zip(lead_cells, stats)])

    parts, start = [], 0
    while True:
        end = start + 1
        while end < len(keys) and len(part(start, end + 1).splitlines()[0]) <= WIDTH:
            end += 1  # add columns while the table fits
        parts.append(part(start, min(end, len(keys))))
        start = end
        if start >= len(keys):
            break
    legend = [f"{SHORT[k]}: {TITLES[k]}" for k in keys if k in SHORT and SHORT[k] != TITLES[k]]
    text = "\n\n".join(parts)
    if long_names:
        text += "\n\n" + "\n".join(f"{label}: {name}" for label, name in zip(labels, names))
    if legend:
        text += "\n\n" + _wrap("; ".join(legend))
    if line := missing_line(keys):
        text += "\n\n" + _wrap(line)
    return text


def _wrap(text: str) -> str:
    """Return `text` wrapped at WIDTH columns."""
    import textwrap

    return textwrap.fill(text, WIDTH)
