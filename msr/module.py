"""The LightningModule: trains MS R-CNN / Mask R-CNN and evaluates it with COCO metrics + calibration."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from msr.evaluation import COCOEvaluator
from msr.models import build_model
from msr.optim import build_optimizer, lr_multiplier, scaled_lr

log = logging.getLogger(__name__)

#: Scalar metrics logged at every evaluation (the rest go to metrics.json).
LOGGED_METRICS = (
    "bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs", "bbox/APm", "bbox/APl",
    "segm/AP", "segm/AP50", "segm/AP75", "segm/APs", "segm/APm", "segm/APl",
)  # fmt: skip
NONFINITE_POLICIES = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite and the policy is 'stop'."""


def rescale_outputs(
    outputs: list[dict], from_sizes: Sequence[tuple[int, int]], to_sizes: Sequence[tuple[int, int]]
):
    """Return outputs mapped from the (resized) input frame back to the original image frame."""
    rescaled = []
    for out, (h, w), (oh, ow) in zip(outputs, from_sizes, to_sizes):
        if (h, w) == (oh, ow):
            rescaled.append(out)
            continue
        out = dict(out)
        scale = torch.tensor([ow / w, oh / h, ow / w, oh / h], device=out["boxes"].device)
        out["boxes"] = out["boxes"] * scale
        if "masks" in out and out["masks"].numel():
            out["masks"] = F.interpolate(out["masks"], size=(oh, ow), mode="bilinear", align_corners=False)
        elif "masks" in out:
            out["masks"] = out["masks"].new_zeros((0, 1, oh, ow))
        rescaled.append(out)
    return rescaled


class MSRModule(pl.LightningModule):
    """Wraps `msr.models.build_model(**model_cfg)`; logs losses, lr and COCO/calibration metrics.

    Checkpoints hold everything needed to rebuild the model (`model_cfg`, class names and the
    label -> category id map), so `MSRModule.load_from_checkpoint(path)` needs no config, and the
    training run's data config (`hparams.data_cfg`), which msr-eval evaluates on by default.
    """

    def __init__(
        self,
        model_cfg: Mapping[str, Any],
        optim: Mapping[str, Any] | None = None,
        schedule: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        nonfinite_loss: str = "stop",
        class_names: Sequence[str] | None = None,
        label_to_cat_id: Mapping[int, int] | None = None,
        data_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        """`data_cfg` (the resolved data config of the training run) is only stored, for msr-eval."""
        super().__init__()
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite_loss must be one of {NONFINITE_POLICIES}, got {nonfinite_loss!r}")
        self.save_hyperparameters()
        self.model = build_model(**dict(model_cfg))
        self.optim_cfg = dict(optim or {})
        self.schedule_cfg = dict(schedule or {})
        self.eval_cfg = dict(evaluation or {})
        self.nonfinite_loss = nonfinite_loss
        self.class_names = list(class_names) if class_names else None
        self.label_to_cat_id = {int(k): int(v) for k, v in (label_to_cat_id or {}).items()} or None
        self.evaluator: COCOEvaluator | None = None
        self.last_metrics: dict[str, float] = {}
        self.skipped_steps = 0
        self.output_dir: Path | None = None

    # -- training -----------------------------------------------------------------------------------
    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Return the model's per-image detections (eval mode)."""
        return self.model(images)

    def training_step(self, batch, batch_idx: int):
        """Return the summed loss, or None to skip a step whose loss is not finite (policy 'skip')."""
        images, targets = batch
        # a skipped step must leave no trace: keep the norm statistics it would update (a few KB)
        saved = [b.clone() for b in self._float_buffers()] if self.nonfinite_loss == "skip" else []
        losses = self.model(_plain(images), [_model_target(t) for t in targets])
        total = sum(losses.values())
        finite = torch.isfinite(total.detach())
        if self.trainer.world_size > 1:  # every rank must take the same decision, or DDP hangs
            flag = finite.to(torch.float32)
            finite = self.trainer.strategy.reduce(flag, reduce_op="min") > 0
        if not bool(finite):
            ids = [int(t["image_id"]) for t in targets]
            detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            message = f"non-finite loss at global step {self.global_step} (image ids {ids}): {detail}"
            if self.nonfinite_loss == "stop":
                raise NonFiniteLossError(message + "; set nonfinite_loss=skip to skip such steps")
            with torch.no_grad():
                for buffer, value in zip(self._float_buffers(), saved):
                    buffer.copy_(value)
            self.skipped_steps += 1
            log.warning("%s; step skipped (%d so far)", message, self.skipped_steps)
            return None
        batch_size = len(images)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        return total

    def _float_buffers(self) -> list[torch.Tensor]:
        """Return the model's floating-point buffers (norm running statistics), live, in a fixed order."""
        return [b for b in self.model.buffers() if b.is_floating_point()]

    def configure_optimizers(self):
        """Return the optimizer and a per-step LambdaLR (warmup + step/cosine decay)."""
        cfg = dict(self.optim_cfg)
        base_lr = float(cfg.pop("base_lr", 0.02))
        global_batch = self._global_batch_size()
        lr = scaled_lr(base_lr, global_batch) if cfg.pop("scale_lr", True) else base_lr
        optimizer = build_optimizer(self.model, lr=lr, **cfg)
        sched = dict(self.schedule_cfg)
        total = int(self.trainer.estimated_stepping_batches)
        unit = sched.get("unit", "step")
        per_unit = 1.0
        if unit == "epoch":
            max_epochs = self.trainer.max_epochs or 1
            per_unit = total / max_epochs
        elif unit != "step":
            raise ValueError(f"schedule.unit must be 'step' or 'epoch', got {unit!r}")
        factor = lr_multiplier(
            total_steps=total,
            warmup_steps=round(float(sched.get("warmup", 0)) * per_unit),
            warmup_factor=float(sched.get("warmup_factor", 0.001)),
            decay=sched.get("decay", "step"),
            milestones=[round(float(m) * per_unit) for m in sched.get("milestones", [])],
            gamma=float(sched.get("gamma", 0.1)),
            min_lr_factor=float(sched.get("min_lr_factor", 0.0)),
        )
        log.info("lr %.5g for a global batch of %d (base lr %.5g per 16 images)", lr, global_batch, base_lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _global_batch_size(self) -> int:
        datamodule = getattr(self.trainer, "datamodule", None)
        per_device = int(getattr(datamodule, "batch_size", 1))
        return per_device * self.trainer.world_size * self.trainer.accumulate_grad_batches

    # -- evaluation -----------------------------------------------------------------------------------
    def _make_evaluator(self, split: str) -> COCOEvaluator:
        datamodule = self.trainer.datamodule
        ann_file = datamodule.val_ann if split == "val" else (datamodule.test_ann or datamodule.val_ann)
        results_dir = None
        if self.output_dir is not None and self.eval_cfg.get("save_results", True):
            results_dir = self.output_dir / "eval"
        return COCOEvaluator(
            ann_file,
            self.label_to_cat_id or datamodule.label_to_cat_id,
            backend=self.eval_cfg.get("backend", "faster_coco_eval"),
            calibration=self.eval_cfg.get("calibration", True),
            upper_bound=self.eval_cfg.get("upper_bound", False),
            per_class=self.eval_cfg.get("per_class", True),
            results_dir=results_dir,
            print_fn=print if self.eval_cfg.get("print_tables", False) else None,
        )

    def _eval_step(self, batch) -> None:
        images, targets = batch
        outputs = self.model(_plain(images))
        from_sizes = [tuple(im.shape[-2:]) for im in images]
        to_sizes = [
            tuple(int(s) for s in t.get("orig_size", im.shape[-2:])) for t, im in zip(targets, images)
        ]
        outputs = rescale_outputs(outputs, from_sizes, to_sizes)
        self.evaluator.update([{k: v.detach().cpu() for k, v in o.items()} for o in outputs],
                              [int(t["image_id"]) for t in targets])  # fmt: skip

    def _eval_end(self, prefix: str) -> dict[str, float]:
        metrics = self.evaluator.compute()
        self.last_metrics = {**metrics, "_global_step": self.global_step}
        logged = {
            f"{prefix}/{k}": v
            for k, v in metrics.items()
            if k in LOGGED_METRICS or k.startswith(("calib/", "segm_upper_bound/AP", "segm_class_score/AP"))
        }
        logged = {k: float(v) for k, v in logged.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if f"{prefix}/segm/AP" not in logged:  # the checkpoint monitor needs it even when undefined
            logged[f"{prefix}/segm/AP"] = float(max(metrics.get("segm/AP", 0.0), 0.0))
        self.log_dict(logged, sync_dist=False, rank_zero_only=False)
        if self.output_dir is not None and self.trainer.is_global_zero:
            from msr.evaluation.json_io import save_json_atomic

            record = {
                "split": prefix,
                "epoch": self.current_epoch,
                "global_step": self.global_step,
                **metrics,
            }
            save_json_atomic(record, self.output_dir / "eval" / f"{prefix}_metrics.json")
        return metrics

    def on_validation_epoch_start(self) -> None:
        self.evaluator = self._make_evaluator("val")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.evaluator.reset()
            return
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self.evaluator = self._make_evaluator("test")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def predict_step(self, batch, batch_idx: int):
        """Return (samples' metadata, detections in the original image frame) for a predict batch."""
        images, metas = batch
        outputs = self.model(_plain(images))
        from_sizes = [tuple(im.shape[-2:]) for im in images]
        to_sizes = [tuple(int(s) for s in m.get("orig_size", im.shape[-2:])) for m, im in zip(metas, images)]
        outputs = rescale_outputs(outputs, from_sizes, to_sizes)
        return metas, [{k: v.detach().cpu() for k, v in o.items()} for o in outputs]


def _model_target(target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return the keys the model trains on, as plain tensors."""
    return {
        "boxes": target["boxes"].as_subclass(torch.Tensor).to(torch.float32),
        "labels": target["labels"].as_subclass(torch.Tensor),
        "masks": target["masks"].as_subclass(torch.Tensor),
    }


def _plain(images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Return the images as plain tensors (tv_tensors subclasses would leak into the model's ops)."""
    return [im.as_subclass(torch.Tensor) for im in images]
