"""Lightning callbacks of msr-train: evaluation figures as PNG files and, with W&B, as dashboard media."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import SIGTERMException

from msr.figures import (
    calibration_figure,
    figure_to_array,
    per_class_ap,
    save_csv,
    save_png,
    side_by_side,
)
from msr.tracking import wandb_loggers
from msr.visualize import class_captions, draw_instances, draw_prediction

log = logging.getLogger(__name__)

#: Calibration points sent to W&B as an interactive scatter table (a random subset beyond this).
MAX_SCATTER_POINTS = 2000


class EvaluationFigures(pl.Callback):
    """After every validation (not the sanity check), on rank 0, write and log the evaluation's pictures.

    Files under `<folder>/figures/step_<global step>/`:
      `samples/<image id>.png`  ground truth | prediction for the first `num_images` val images
                                (masks, boxes, class, box score and mask score);
      `calibration.png`         true IoU vs class score and vs mask score, reliability curve,
                                predicted-IoU histogram;
      `per_class_ap.csv`        class, bbox AP, segm AP.
    With a WandbLogger the same go to the run as `val/samples` (wandb.Image list), `val/calibration`
    (wandb.Image), `val/calibration_points` (wandb.Table with scatter plots), `val/pred_iou`
    (wandb.Histogram) and `val/per_class_ap` (wandb.Table), at the step of the evaluation's metrics.
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

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        step = trainer.global_step
        out = self.folder / "figures" / f"step_{step:07d}"
        samples = self.sample_pictures(trainer, pl_module)
        for image_id, picture in samples:
            save_png(picture, out / "samples" / f"{image_id}.png")
        evaluator = getattr(pl_module, "evaluator", None)
        calib = getattr(evaluator, "calibration_data", None)
        calib_picture = None
        if calib is not None and len(calib.true_iou):
            calib_picture = figure_to_array(calibration_figure(calib, f"MaskIoU calibration at step {step}"))
            save_png(calib_picture, out / "calibration.png")
        columns, rows = per_class_ap(getattr(pl_module, "last_metrics", {}) or {})
        if rows:
            save_csv(columns, rows, out / "per_class_ap.csv")
        # W&B x-axis: the step Lightning gave this evaluation's metrics, so pictures and AP line up
        axis_step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", step)
        for logger in wandb_loggers(trainer.loggers):
            self._log_wandb(logger, axis_step, samples, calib, calib_picture, columns, rows)

    @torch.no_grad()
    def sample_pictures(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> list[tuple[int, np.ndarray]]:
        """Return [(image id, GT | prediction picture)] for the first `num_images` images of the val set."""
        dataset = getattr(trainer.datamodule, "val_dataset", None) if trainer.datamodule else None
        if dataset is None or self.num_images <= 0:
            return []
        class_names = getattr(pl_module, "class_names", None)
        model = pl_module.model
        was_training = model.training
        model.eval()
        pictures = []
        try:
            samples = [dataset[index] for index in range(min(self.num_images, len(dataset)))]
            if not samples:
                return []
            images = [image.as_subclass(torch.Tensor) for image, _ in samples]
            outputs = model([image.to(pl_module.device) for image in images])  # one batched pass
            for image, (_, target), output in zip(images, samples, outputs):
                factor = max(1, math.ceil(self.min_side / min(image.shape[-2:])))
                truth = enlarge_instances(target, factor)
                prediction = enlarge_instances({k: v.cpu() for k, v in output.items()}, factor)
                image = enlarge_image(image, factor)
                labels = target["labels"].tolist()
                pictures.append((
                    int(target["image_id"]),
                    side_by_side(
                        draw_instances(image, truth["boxes"], truth["masks"], labels,
                                       class_captions(labels, class_names)),
                        draw_prediction(image, prediction, class_names, self.score_thresh),
                    ),
                ))  # fmt: skip
        finally:
            model.train(was_training)
        return pictures

    def _log_wandb(
        self,
        logger: Any,
        step: int,
        samples: Sequence[tuple[int, np.ndarray]],
        calib: Any,
        calib_picture: np.ndarray | None,
        columns: list[str],
        rows: list[list],
    ) -> None:
        """Log the pictures, calibration views and per-class AP to a WandbLogger's run."""
        import wandb

        payload: dict[str, Any] = {"trainer/global_step": step}
        if samples:
            payload["val/samples"] = [
                wandb.Image(picture, caption=f"image {image_id}: ground truth | prediction")
                for image_id, picture in samples
            ]
        if calib_picture is not None:
            payload["val/calibration"] = wandb.Image(calib_picture, caption="MaskIoU calibration")
            payload.update(self._calibration_tables(calib, step))
        if rows:
            payload["val/per_class_ap"] = wandb.Table(columns=columns, data=rows)
        logger.experiment.log(payload)

    @staticmethod
    def _calibration_tables(calib: Any, step: int) -> dict[str, Any]:
        """Return the W&B scatter plots and predicted-IoU histogram of the matched detections."""
        import wandb

        matched = np.flatnonzero(calib.matched)
        if matched.size > MAX_SCATTER_POINTS:
            matched = np.sort(np.random.default_rng(step).choice(matched, MAX_SCATTER_POINTS, replace=False))
        columns = ["true_iou", "class_score", "mask_score", "pred_iou"]
        data = [
            [float(calib.true_iou[i]), float(calib.class_score[i]), float(calib.mask_score[i]),
             None if np.isnan(calib.pred_iou[i]) else float(calib.pred_iou[i])]
            for i in matched
        ]  # fmt: skip
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
        pred = calib.pred_iou[~np.isnan(calib.pred_iou)]
        if pred.size:
            out["val/pred_iou"] = wandb.Histogram(np.clip(pred, 0, 1))
        return out


def enlarge_image(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Return the [C, H, W] image enlarged `factor` times by nearest neighbour (as float)."""
    if factor == 1:
        return image
    return F.interpolate(image[None].float(), scale_factor=factor, mode="nearest")[0]


def enlarge_instances(instances: dict, factor: int) -> dict:
    """Return a copy of `instances` for an image enlarged `factor` times: boxes scaled, masks enlarged.

    `boxes` [N, 4]; `masks` [N, H, W] or [N, 1, H, W], bool or probabilities (nearest neighbour);
    other entries are kept as they are.
    """
    out = dict(instances)
    out["boxes"] = instances["boxes"].as_subclass(torch.Tensor).float() * factor
    masks = instances["masks"].as_subclass(torch.Tensor)
    if factor > 1:
        height, width = masks.shape[-2] * factor, masks.shape[-1] * factor
        flat = masks.float().reshape(-1, 1, *masks.shape[-2:])
        flat = F.interpolate(flat, size=(height, width), mode="nearest") if flat.numel() else flat
        masks = flat.reshape(*masks.shape[:-2], height, width)
    out["masks"] = masks
    return out


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM (preemption, `scancel`, SLURM requeue) write `<folder>/checkpoints/last.ckpt`.

    Lightning turns SIGTERM into a SIGTERMException at the next step boundary on every rank; this
    callback saves the full training state then (atomically, like every Lightning checkpoint), so
    `ckpt_path=auto` (or `last`) resumes from the step where the run was stopped.
    """

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.path = Path(folder) / "checkpoints" / "last.ckpt"

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path)
        log.warning("SIGTERM at global step %d: checkpoint written to %s", trainer.global_step, self.path)
