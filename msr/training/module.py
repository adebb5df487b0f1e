"""The LightningModule: trains a detector and hands every evaluation to the callbacks.

Built by `hydra.utils.instantiate(cfg.module, net=..., optimizer=..., scheduler=..., evaluator=...)`:
the net (msr.models.build_detector), a partial optimizer (msr/conf/optimizer/), a partial scheduler
(msr/conf/schedule/) and a COCOEvaluator (msr/conf/evaluation/) come from their config groups.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from msr.errors import UserError
from msr.evaluation.evaluator import COCOEvaluator
from msr.evaluation.metrics import logged_metrics
from msr.models.postprocess import box_mask_output
from msr.training.callbacks.base import Evaluation, dispatch_evaluation
from msr.training.optim import build_optimizer

log = logging.getLogger(__name__)

NONFINITE_POLICIES = ("stop", "skip")


class NonFiniteLossError(UserError):
    """A loss is NaN or infinite and the policy is 'stop'; the message names the step, the image ids and
    what to change (the learning rate, the data, or module.nonfinite_loss=skip)."""


class MSRModule(pl.LightningModule):
    """Trains `net` (MS R-CNN or Mask R-CNN), logs losses and lr, and evaluates with `evaluator`.

    Checkpoints hold what rebuilds the model without any config (`net_config`, the resolved
    `model` config; see msr.training.checkpoints.load_module), the class names and the label ->
    category id map, and the training run's data config (`data_config`, msr-eval's default data).
    After every evaluation `last_evaluation` holds its `Evaluation` record.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        evaluator: COCOEvaluator | None = None,
        *,
        net_config: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        label_to_cat_id: Mapping[int, int] | None = None,
        data_config: Mapping[str, Any] | None = None,
        nonfinite_loss: str = "stop",
        lr_reference_batch: int | None = 16,
        no_decay_norm_bias: bool = False,
        eval_frozen_norms: bool = False,
    ) -> None:
        super().__init__()
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite_loss must be one of {NONFINITE_POLICIES}, got {nonfinite_loss!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "evaluator"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.evaluator = evaluator
        self.class_names = list(class_names) if class_names else None
        self.label_to_cat_id = {int(k): int(v) for k, v in (label_to_cat_id or {}).items()} or None
        self.last_evaluation: Evaluation | None = None
        #: The global step of the checkpoint this module was loaded from (msr-eval labels figures with it).
        self.checkpoint_step = 0
        self.skipped_steps = 0
        self._ground_truth: str | None = None  # the annotation file of the running evaluation

    def on_train_start(self) -> None:
        """With `eval_frozen_norms`, put the BatchNorm layers whose parameters are all frozen in eval mode, so
        a frozen trunk's running statistics stay as they are while the MaskIoU head trains (Lightning keeps
        each layer's mode across validations)."""
        if not self.hparams.get("eval_frozen_norms"):
            return
        for layer in self.net.modules():
            frozen = not any(p.requires_grad for p in layer.parameters(recurse=False))
            if isinstance(layer, nn.modules.batchnorm._BatchNorm) and frozen:
                layer.eval()

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Return the net's per-image detections (eval mode)."""
        return self.net(images)

    # -- training -------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        """Return the summed loss, or None to skip a step whose loss is not finite (policy 'skip')."""
        images, targets = batch
        policy = self.hparams.nonfinite_loss
        # a skipped step must leave no trace: keep the norm statistics it would update (a few KB)
        saved = [b.clone() for b in self._float_buffers()] if policy == "skip" else []
        losses = self.net(plain_images(images), [model_target(t) for t in targets])
        total = sum(losses.values())
        finite = torch.isfinite(total.detach())
        if self.trainer.world_size > 1:  # every rank must take the same decision, or DDP hangs
            finite = self.trainer.strategy.reduce(finite.to(torch.float32), reduce_op="min") > 0
        if not bool(finite):
            ids = [int(t["image_id"]) for t in targets]
            detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            message = f"non-finite loss at global step {self.global_step} (image ids {ids}): {detail}"
            if policy == "stop":
                raise NonFiniteLossError(message + "; set module.nonfinite_loss=skip to skip such steps")
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
        """Return the net's floating-point buffers (norm running statistics), live, in a fixed order."""
        return [b for b in self.net.buffers() if b.is_floating_point()]

    def configure_optimizers(self) -> dict[str, Any]:
        """Return the optimizer and its per-step learning-rate scheduler."""
        if self.optimizer_factory is None:
            raise RuntimeError("MSRModule was built without an optimizer: it can evaluate but not train")
        global_batch = self._global_batch_size()
        optimizer, lr = build_optimizer(
            self.optimizer_factory,
            self.net,
            global_batch,
            self.hparams.lr_reference_batch,
            self.hparams.no_decay_norm_bias,
        )
        log.info("lr %.5g for a global batch of %d", lr, global_batch)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total = int(self.trainer.estimated_stepping_batches)  # also sets up the training data
        per_epoch = self._steps_per_epoch()
        scheduler = self.scheduler_factory(optimizer, total_steps=total, steps_per_epoch=per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _steps_per_epoch(self) -> int | None:
        """Return the optimizer steps of one epoch (None when training is not counted in epochs)."""
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches) or batches <= 0 or (self.trainer.max_epochs or -1) < 0:
            return None
        return math.ceil(batches / self.trainer.accumulate_grad_batches)

    def _global_batch_size(self) -> int:
        """Return the images per optimizer step over all processes."""
        per_device = int(getattr(self.trainer.datamodule, "batch_size", 1))
        return per_device * self.trainer.world_size * self.trainer.accumulate_grad_batches

    # -- evaluation -----------------------------------------------------------------------------------
    def _begin_evaluation(self, split: str) -> None:
        """Point the evaluator at the split's annotations and forget earlier results."""
        if self.evaluator is None:
            raise RuntimeError("MSRModule was built without an evaluator: it cannot validate or test")
        datamodule = self.trainer.datamodule
        ann_file = evaluated_annotations(datamodule, split)
        self.evaluator.bind(ann_file, self.label_to_cat_id or datamodule.label_to_cat_id)
        self.evaluator.reset()
        self._ground_truth = None if ann_file is None else str(ann_file)

    def _evaluate_batch(self, batch) -> list[dict[str, torch.Tensor]]:
        """Run the net on a batch, hand the detections (original picture frame) to the evaluator and
        return them in the batch's frame, for callbacks that draw them."""
        images, targets = batch
        sizes = [tuple(im.shape[-2:]) for im in images]
        to_sizes = original_sizes(images, targets)
        with box_mask_output(self.net, sizes == to_sizes, self.evaluator.mask_threshold):
            outputs = self.net(plain_images(images))
        original = to_original_frame(outputs, sizes, to_sizes)
        self.evaluator.update(
            [{k: v.detach().cpu() for k, v in o.items()} for o in original],
            [int(t["image_id"]) for t in targets],
        )
        return outputs

    def _end_evaluation(self, split: str) -> None:
        """Compute the metrics, log them, and hand the evaluation to the callbacks."""
        result = self.evaluator.compute()
        logged = {f"{split}/{k}": v for k, v in logged_metrics(result.metrics).items()}
        if f"{split}/segm/AP" not in logged:  # the checkpoint monitor needs it even when undefined
            logged[f"{split}/segm/AP"] = float(max(result.metrics.get("segm/AP", 0.0), 0.0))
        # the callbacks (checkpoint monitor, progress bar) read them from here ...
        self.log_dict(logged, logger=False, sync_dist=False, rank_zero_only=False)
        # ... and the loggers get them at the optimizer step the evaluation followed, the step of its figures
        for logger in self.loggers:
            logger.log_metrics({**logged, "epoch": self.current_epoch}, step=self.global_step)
        step = self.global_step or self.checkpoint_step  # msr-eval: the step the checkpoint was written at
        self.last_evaluation = Evaluation(split, self.current_epoch, step, result, self._ground_truth)
        dispatch_evaluation(self.trainer, self, self.last_evaluation)

    def on_validation_epoch_start(self) -> None:
        self._begin_evaluation("val")

    def validation_step(self, batch, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        return self._evaluate_batch(batch)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.evaluator.reset()
            return
        self._end_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._begin_evaluation("test")

    def test_step(self, batch, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        return self._evaluate_batch(batch)

    def on_test_epoch_end(self) -> None:
        self._end_evaluation("test")

    def predict_step(self, batch, batch_idx: int) -> tuple[list[dict], list[dict[str, torch.Tensor]]]:
        """Return (the pictures' metadata, their detections in the original picture frame, on the CPU)."""
        images, metas = batch
        sizes = [tuple(im.shape[-2:]) for im in images]
        to_sizes = original_sizes(images, metas)
        with box_mask_output(self.net, sizes == to_sizes):
            outputs = self.net(plain_images(images))
        outputs = to_original_frame(outputs, sizes, to_sizes)
        return metas, [{k: v.detach().cpu() for k, v in o.items()} for o in outputs]


def evaluated_annotations(datamodule: Any, split: str) -> Any:
    """Return the annotation file a `split` ("val" or "test") evaluation scores against (test falls back
    to val)."""
    return datamodule.val_ann if split == "val" else (datamodule.test_ann or datamodule.val_ann)


def original_sizes(
    images: Sequence[torch.Tensor], metas: Sequence[Mapping[str, Any]]
) -> list[tuple[int, int]]:
    """Return each picture's original (height, width): its `orig_size` when the data set resized it."""
    return [tuple(int(s) for s in m.get("orig_size", i.shape[-2:])) for m, i in zip(metas, images)]


def to_original_frame(
    outputs: list[dict[str, torch.Tensor]],
    from_sizes: Sequence[tuple[int, int]],
    to_sizes: Sequence[tuple[int, int]],
) -> list[dict[str, torch.Tensor]]:
    """Return the detections mapped from the (resized) input frame to the picture's original frame.

    Boxes are scaled; masks [N, 1, h, w] are resized bilinearly (probabilities: BoxMasks, already cut,
    cannot be). Outputs whose sizes agree are returned as they are.
    """
    rescaled = []
    for out, (h, w), (oh, ow) in zip(outputs, from_sizes, to_sizes):
        if (h, w) == (oh, ow):
            rescaled.append(out)
            continue
        if not isinstance(out.get("masks", torch.empty(0)), torch.Tensor):
            raise ValueError("to_original_frame resizes mask probabilities; box masks must not be resized")
        out = dict(out)
        scale = torch.tensor([ow / w, oh / h, ow / w, oh / h], device=out["boxes"].device)
        out["boxes"] = out["boxes"] * scale
        if "masks" in out and out["masks"].numel():
            out["masks"] = F.interpolate(out["masks"], size=(oh, ow), mode="bilinear", align_corners=False)
        elif "masks" in out:
            out["masks"] = out["masks"].new_zeros((0, 1, oh, ow))
        rescaled.append(out)
    return rescaled


def model_target(target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return the keys the net trains on, as plain tensors."""
    return {
        "boxes": target["boxes"].as_subclass(torch.Tensor).to(torch.float32),
        "labels": target["labels"].as_subclass(torch.Tensor),
        "masks": target["masks"].as_subclass(torch.Tensor),
    }


def plain_images(images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Return the images as plain tensors (tv_tensors subclasses would leak into the net's ops)."""
    return [im.as_subclass(torch.Tensor) for im in images]
