"""The MaskIoU calibration figure: true mask IoU against the class score and the mask score, the
reliability curve and the histogram of predicted IoU (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from msr.evaluation.calibration import CalibrationData

#: Size of the calibration figure in pixels (width, height).
CALIBRATION_FIGURE_SIZE = (1000, 800)
_DPI = 100


def reliability_curve(
    pred_iou: np.ndarray, true_iou: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (bin centres [B], mean true IoU per predicted-IoU bin [B], detections per bin [B]).

    Bins split [0, 1] evenly; predicted IoUs outside it are clipped into the end bins. An empty bin's
    mean is NaN. A perfectly calibrated head has mean true IoU = bin centre.
    """
    pred = np.clip(np.asarray(pred_iou, dtype=np.float64), 0.0, 1.0)
    true = np.asarray(true_iou, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(pred, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=true, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return (edges[:-1] + edges[1:]) / 2, means, counts


def calibration_figure(data: CalibrationData, title: str = "") -> Figure:
    """Return a 2x2 figure over the matched detections of `data` (true IoU > 0).

    Panels: true IoU vs class score; true IoU vs mask score; reliability curve (mean true IoU per
    predicted-IoU bin); histogram of predicted IoU. Without predicted IoUs (Mask R-CNN) the last two
    panels say so.
    """
    m = data.matched
    true = data.true_iou[m]
    has_pred = ~np.isnan(data.pred_iou[m])
    fig = Figure(figsize=(CALIBRATION_FIGURE_SIZE[0] / _DPI, CALIBRATION_FIGURE_SIZE[1] / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    for ax, score, label in (
        (axes[0, 0], data.class_score[m], "class (box) score"),
        (axes[0, 1], data.mask_score[m], "mask score"),
    ):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)  # a score equal to the true IoU
        ax.scatter(score, true, s=6, alpha=0.4, linewidths=0)
        r = _pearson(score, true)
        shown = f"r = {r:.2f}, n = {len(true)}" if np.isfinite(r) else f"n = {len(true)}"
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=label, ylabel="true mask IoU", title=f"true IoU vs {label}")
        ax.text(0.03, 0.95, shown, transform=ax.transAxes, va="top", fontsize=9,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    curve_ax, hist_ax = axes[1, 0], axes[1, 1]
    if has_pred.any():
        pred = data.pred_iou[m][has_pred]
        centres, means, counts = reliability_curve(pred, true[has_pred])
        filled = counts > 0
        curve_ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="ideal")
        curve_ax.plot(centres[filled], means[filled], marker="o", label="MaskIoU head")
        for x, y, n in zip(centres[filled], means[filled], counts[filled]):  # detections per bin
            curve_ax.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(0, 6), ha="center",
                              fontsize=7, color="dimgrey")
        curve_ax.legend(loc="upper left")
        hist_ax.hist(np.clip(pred, 0, 1), bins=20, range=(0, 1))
    else:
        for ax in (curve_ax, hist_ax):
            ax.text(0.5, 0.5, "no predicted IoU\n(Mask R-CNN)", ha="center", va="center")
    curve_ax.set(
        xlim=(0, 1), ylim=(0, 1), xlabel="predicted IoU", ylabel="mean true IoU",
        title="reliability (numbers: detections per bin)",
    )
    hist_ax.set(xlim=(0, 1), xlabel="predicted IoU", ylabel="detections", title="predicted IoU")
    fig.suptitle(title or f"MaskIoU calibration ({int(m.sum())} matched detections)")
    fig.tight_layout()
    return fig


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Return Pearson's r of x and y (NaN for fewer than 2 points or a constant input)."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def figure_to_array(fig: Figure) -> np.ndarray:
    """Return the rendered figure as an [H, W, 3] uint8 array."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
