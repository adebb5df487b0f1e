"""A study's paired contrasts as one picture (msr-aggregate's `<out>.png`; matplotlib's Agg canvas).

One panel per contrast (Δ segm AP, Δ class-score AP, Δ bbox AP, rescoring gain, Δ rescoring gain vs the
reference) that some variant has; in each, one row per variant: the estimate (a dot), its 95% interval
over training runs (thin line with end ticks, absent below 2 seeds) and its 95% interval given these
trained models (thick bar, the paired bootstrap over val pictures), the zero line and the number of seeds.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from msr.files import atomic_path
from msr.studies.intervals import QUANTITIES, VariantIntervals

_DPI = 100
_COLUMNS = 2
_RUNS, _PICTURES = "#1f4e79", "#e08a1e"


def study_figure(names: Sequence[str], intervals: Sequence[VariantIntervals], title: str = "") -> Figure:
    """Return the figure of the study's contrasts (`names[i]`'s intervals are `intervals[i]`); a study
    without any contrast gets one panel that says so."""
    panels = [(key, label) for key, label in QUANTITIES if any(key in v.contrasts for v in intervals)]
    columns = min(_COLUMNS, max(len(panels), 1))
    rows = max(math.ceil(len(panels) / columns), 1)
    height = 1.2 + rows * (0.9 + 0.45 * len(names))
    fig = Figure(figsize=(6.0 * columns + 1.5, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    labels = [textwrap.fill(name, 30) for name in names]
    for ax, (key, label) in zip(axes, panels):
        _panel(ax, key, textwrap.fill(label, 55), labels, intervals)
    for ax in axes[len(panels):]:
        ax.axis("off")
    if not panels:
        axes[0].text(0.5, 0.5, "no paired contrasts (no saved results)", ha="center", va="center")
    legend = [
        Line2D([], [], color=_RUNS, linewidth=1.2, marker="|", markersize=8, label="95% over training runs"),
        Line2D([], [], color=_PICTURES, linewidth=6, alpha=0.7, label="95% given these trained models"),
        Line2D([], [], color="black", marker="o", linestyle="none", markersize=4, label="estimate"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96 if title else 1))
    return fig


def _panel(ax, key: str, label: str, names: Sequence[str], intervals: Sequence[VariantIntervals]) -> None:
    """Draw one contrast's rows into `ax`."""
    ys = list(range(len(names)))[::-1]
    for y, found in zip(ys, intervals):
        contrast = found.contrasts.get(key)
        if contrast is None:
            continue
        pictures, runs = contrast.pictures, contrast.runs
        ax.plot([pictures.low, pictures.high], [y, y], color=_PICTURES, linewidth=6, alpha=0.7,
                solid_capstyle="butt")
        if runs.has_interval:
            ax.plot([runs.low, runs.high], [y, y], color=_RUNS, linewidth=1.2, marker="|", markersize=10)
        ax.plot([pictures.estimate], [y], "o", color="black", markersize=4)
        seeds = f"{runs.seeds} seed{'s' if runs.seeds != 1 else ''}"
        ax.annotate(seeds if runs.has_interval else f"{seeds}: no interval over runs", (1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=7)
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(ys, names, fontsize=7)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_title(label, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", linewidth=0.3, alpha=0.5)


def write_study_figure(
    path: str | Path, names: Sequence[str], intervals: Sequence[VariantIntervals], title: str = ""
) -> Path:
    """Write `study_figure` as a PNG to `path` atomically; return the path."""
    fig = study_figure(names, intervals, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)
