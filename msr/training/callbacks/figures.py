"""The pictures of every evaluation, as PNG/CSV files in the run folder and, with W&B, as dashboard media."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from msr.files import write_csv_atomic
from msr.training.callbacks.base import Evaluation, EvaluationCallback
from msr.training.tracking import wandb_loggers
from msr.viz.calibration import calibration_figure, figure_to_array
from msr.viz.overlays import (
    class_captions,
    draw_instances,
    draw_prediction,
    enlarge_image,
    enlarge_instances,
    save_png,
    side_by_side,
)

#: Calibration points sent to W&B as an interactive scatter table (a random subset beyond this).
MAX_SCATTER_POINTS = 2000


class EvaluationFigures(EvaluationCallback):
    """After every validation, on rank 0, write and log the evaluation's pictures.

    Files under `<folder>/step_<global step>/`:
      `samples/<image id>.png`  ground truth | prediction for the first `num_images` pictures the
                                validation ran on (masks, boxes, class, box score and mask score);
      `calibration.png`         true IoU vs class score and vs mask score, reliability curve,
                                predicted-IoU histogram;
      `per_class_ap.csv`        class, bbox AP, segm AP.
    The predictions are those of the evaluation itself (no second forward pass). With a WandbLogger the
    same go to the run as `val/samples` (wandb.Image list), `val/calibration` (wandb.Image),
    `val/calibration_points` (wandb.Table with scatter plots), `val/pred_iou` (wandb.Histogram) and
    `val/per_class_ap` (wandb.Table), at the step of the evaluation's metrics.
    """

    def __init__(
        self, folder: str | Path, num_images: int = 4, score_thresh: float = 0.5, min_side: int = 384
    ) -> None:
        """`min_side`: smaller pictures are enlarged by a whole factor to reach it (legible captions)."""
        super().__init__()
        self.folder = Path(folder)
        self.num_images = int(num_images)
        self.score_thresh = float(score_thresh)
        self.min_side = int(min_side)
        self._samples: list[tuple[torch.Tensor, dict, dict]] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samples = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the first `num_images` (picture, ground truth, detections) of this validation (rank 0)."""
        if not trainer.is_global_zero or trainer.sanity_checking or not outputs:
            return
        images, targets = batch
        for image, target, output in zip(images, targets, outputs):
            if len(self._samples) >= self.num_images:
                return
            detections = {k: v.detach().cpu() for k, v in output.items()}
            self._samples.append((image.detach().cpu().as_subclass(torch.Tensor), target, detections))

    def on_evaluation_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, evaluation: Evaluation
    ) -> None:
        if evaluation.split != "val" or not trainer.is_global_zero:
            return
        step = evaluation.global_step
        out = self.folder / f"step_{step:07d}"
        class_names = getattr(pl_module, "class_names", None)
        samples = [(int(t["image_id"]), self.panel(im, t, d, class_names)) for im, t, d in self._samples]
        for image_id, picture in samples:
            save_png(picture, out / "samples" / f"{image_id}.png")
        calib = evaluation.result.calibration
        calib_picture = None
        if calib is not None and len(calib.true_iou):
            calib_picture = figure_to_array(calibration_figure(calib, f"MaskIoU calibration at step {step}"))
            save_png(calib_picture, out / "calibration.png")
        columns, rows = per_class_ap(evaluation.result.metrics)
        if rows:
            write_csv_atomic(columns, rows, out / "per_class_ap.csv")
        loggers = trainer.loggers if evaluation.loggers is None else evaluation.loggers
        for logger in wandb_loggers(loggers):
            log_wandb(logger, step, samples, calib, calib_picture, columns, rows)
        self._samples = []

    def panel(
        self,
        image: torch.Tensor,
        target: Mapping[str, Any],
        detections: Mapping[str, torch.Tensor],
        class_names: Sequence[str] | None,
    ) -> np.ndarray:
        """Return the ground truth | prediction picture of one sample, enlarged to `min_side`."""
        factor = max(1, math.ceil(self.min_side / min(image.shape[-2:])))
        truth = enlarge_instances(target, factor)
        prediction = enlarge_instances(dict(detections), factor)
        image = enlarge_image(image, factor)
        labels = target["labels"].tolist()
        captions = class_captions(labels, class_names)
        return side_by_side(
            draw_instances(image, truth["boxes"], truth["masks"], labels, captions),
            draw_prediction(image, prediction, class_names, self.score_thresh),
            titles=("ground truth", f"prediction (box score >= {self.score_thresh:g})"),
        )


def per_class_ap(
    metrics: Mapping[str, float], iou_types: Sequence[str] = ("bbox", "segm")
) -> tuple[list[str], list[list]]:
    """Return (columns, rows) of per-class AP from `metrics` keys `<type>/AP-<class>` (-1: no GT)."""
    names: list[str] = []
    for key in metrics:
        for t in iou_types:
            prefix = f"{t}/AP-"
            if key.startswith(prefix) and key[len(prefix) :] not in names:
                names.append(key[len(prefix) :])
    columns = ["class", *[f"{t} AP" for t in iou_types]]
    rows = [[name, *[_finite(metrics.get(f"{t}/AP-{name}")) for t in iou_types]] for name in names]
    return columns, rows


def _finite(value: float | None) -> float | None:
    """Return the value as a float, or None when it is missing or not finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def log_wandb(
    logger: Any,
    step: int,
    samples: Sequence[tuple[int, np.ndarray]],
    calib: Any,
    calib_picture: np.ndarray | None,
    columns: list[str],
    rows: list[list],
) -> None:
    """Log the pictures, calibration views and per-class AP to a WandbLogger's run at W&B step `step`."""
    import wandb

    payload: dict[str, Any] = {"trainer/global_step": step}
    if samples:
        payload["val/samples"] = [
            wandb.Image(picture, caption=f"image {image_id}: ground truth | prediction")
            for image_id, picture in samples
        ]
    if calib_picture is not None:
        payload["val/calibration"] = wandb.Image(calib_picture, caption="MaskIoU calibration")
        payload.update(calibration_tables(calib, step))
    if rows:
        payload["val/per_class_ap"] = wandb.Table(columns=columns, data=rows)
    if hasattr(logger, "log_row"):  # msr's logger: W&B's step is the training step
        logger.log_row(payload, step)
    else:
        logger.experiment.log(payload)


def calibration_tables(calib: Any, step: int) -> dict[str, Any]:
    """Return the W&B scatter plots and predicted-IoU histogram of the matched detections."""
    import wandb

    matched = np.flatnonzero(calib.matched)
    if matched.size > MAX_SCATTER_POINTS:
        matched = np.sort(np.random.default_rng(step).choice(matched, MAX_SCATTER_POINTS, replace=False))
    columns = ["true_iou", "class_score", "mask_score", "pred_iou"]
    pred = [None if np.isnan(p) else float(p) for p in calib.pred_iou[matched]]
    true, cls, mask = calib.true_iou[matched], calib.class_score[matched], calib.mask_score[matched]
    data = [[float(t), float(c), float(m), p] for t, c, m, p in zip(true, cls, mask, pred)]
    table = wandb.Table(columns=columns, data=data)
    out = {
        "val/calibration_points": table,
        "val/true_iou_vs_class_score": wandb.plot.scatter(
            table, "class_score", "true_iou", title="true mask IoU vs class score"
        ),
        "val/true_iou_vs_mask_score": wandb.plot.scatter(
            table, "mask_score", "true_iou", title="true mask IoU vs mask score"
        ),
    }
    valid = calib.pred_iou[~np.isnan(calib.pred_iou)]
    if valid.size:
        out["val/pred_iou"] = wandb.Histogram(np.clip(valid, 0, 1))
    return out
