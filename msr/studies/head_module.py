"""The LightningModule of a shared head pass: one frozen trunk, one MaskIoU branch per job.

Every training step runs the trunk once (`msr.models.frozen_trunk.training_inputs`) and each branch's
head, target and loss on the same sampled RoIs; the branches' parameter groups share one optimizer (the
optimizers msr uses are per-parameter, so each head steps exactly as it would alone) and their
gradient norms are clipped one head at a time. Every evaluation runs detection once
(`frozen_trunk.detect`) and lets each branch score the same boxes and masks; each job's evaluator,
evaluation callbacks and loggers see only its own scores. A job's metrics are logged under
`variant_key(index, name)` and reach its own loggers through `VariantLoggers`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from msr.evaluation.evaluator import COCOEvaluator
from msr.evaluation.memo import EvaluationMemo
from msr.evaluation.metrics import logged_metrics
from msr.models.frozen_trunk import detect, training_inputs
from msr.models.maskiou.branch import MaskIoUBranch, mask_scores
from msr.models.postprocess import box_mask_output
from msr.studies.variant_loggers import group_name, variant_key
from msr.training.callbacks.base import Evaluation, EvaluationCallback
from msr.training.module import (
    NONFINITE_POLICIES,
    NonFiniteLossError,
    evaluated_annotations,
    model_target,
    original_sizes,
    plain_images,
    to_original_frame,
)
from msr.training.optim import optimizer_for_groups, parameter_groups

log = logging.getLogger(__name__)


@dataclass
class Variant:
    """One job of the pass as the module sees it: its name (for messages), evaluator, evaluation
    callbacks (files, figures, ...) and the loggers its pictures go to."""

    name: str
    evaluator: COCOEvaluator
    callbacks: list[EvaluationCallback] = field(default_factory=list)
    loggers: tuple[Any, ...] = ()


class HeadStageModule(pl.LightningModule):
    """Trains `branches[i]` for `variants[i]` on the frozen `trunk` (a Mask R-CNN without MaskIoU head).

    The optimizer and scheduler factories, `lr_reference_batch` and `no_decay_norm_bias` are those of
    MSRModule (one config for every job of the pass). `last_evaluations[i]` is job i's latest Evaluation.
    """

    def __init__(
        self,
        trunk: nn.Module,
        branches: Sequence[MaskIoUBranch],
        variants: Sequence[Variant],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        label_to_cat_id: Mapping[int, int],
        nonfinite_loss: str = "stop",
        lr_reference_batch: int | None = 16,
        no_decay_norm_bias: bool = False,
    ) -> None:
        super().__init__()
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite_loss must be one of {NONFINITE_POLICIES}, got {nonfinite_loss!r}")
        if len(branches) != len(variants) or not branches:
            raise ValueError(f"one branch per variant: {len(branches)} branches, {len(variants)} variants")
        self.trunk = trunk
        self.branches = nn.ModuleList(branches)
        self.variants = list(variants)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_to_cat_id = {int(k): int(v) for k, v in label_to_cat_id.items()}
        self.nonfinite_loss = nonfinite_loss
        self.lr_reference_batch = lr_reference_batch
        self.no_decay_norm_bias = no_decay_norm_bias
        self.group_counts: list[int] = []  # optimizer parameter groups of each branch
        self.last_evaluations: list[Evaluation | None] = [None] * len(self.variants)
        self.skipped_steps = 0
        self._ground_truth: str | None = None
        self.memo = EvaluationMemo()  # the jobs' evaluations share their identical steps
        for variant in self.variants:
            variant.evaluator.memo = self.memo
        for parameter in self.trunk.parameters():
            parameter.requires_grad_(False)

    def on_train_start(self) -> None:
        """Put the trunk's BatchNorm layers in eval mode: its statistics stay as trained."""
        for layer in self.trunk.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()

    # -- training -------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        """Return the sum of the branches' MaskIoU losses (None: step skipped, policy 'skip')."""
        images, targets = batch
        inputs = training_inputs(self.trunk, plain_images(images), [model_target(t) for t in targets])
        losses = [branch.training_loss(inputs) for branch in self.branches]
        finite = torch.stack([torch.isfinite(loss.detach()) for loss in losses]).to(torch.float32)
        if self.trainer.world_size > 1:  # every rank must decide alike, or DDP hangs
            finite = self.trainer.strategy.reduce(finite, reduce_op="min")
        if not bool(finite.all()):
            bad = [self.variants[i].name for i in range(len(losses)) if not bool(finite[i])]
            ids = [int(t["image_id"]) for t in targets]
            message = f"non-finite MaskIoU loss at global step {self.global_step} (image ids {ids}) for {bad}"
            if self.nonfinite_loss == "stop":
                raise NonFiniteLossError(message + "; set module.nonfinite_loss=skip to skip such steps")
            self.skipped_steps += 1
            log.warning(
                "%s; step skipped for every head of the pass (%d so far)", message, self.skipped_steps
            )
            return None
        batch_size = len(images)
        for index, loss in enumerate(losses):
            self.log(variant_key(index, "train/loss_maskiou"), loss, batch_size=batch_size)
            self.log(variant_key(index, "train/loss"), loss, batch_size=batch_size)
        total = torch.stack(losses).sum()
        self.log("loss", total, prog_bar=True, logger=False, batch_size=batch_size)
        return total

    def configure_optimizers(self) -> dict[str, Any]:
        """Return one optimizer over every branch's parameter groups, in branch order, and its scheduler."""
        groups: list[dict[str, Any]] = []
        self.group_counts = []
        for index, branch in enumerate(self.branches):
            own = parameter_groups(branch.head, self.no_decay_norm_bias)
            for number, group in enumerate(own, 1):
                group["name"] = group_name(index, number)
            groups += own
            self.group_counts.append(len(own))
        datamodule = self.trainer.datamodule
        global_batch = int(getattr(datamodule, "batch_size", 1)) * self.trainer.world_size
        global_batch *= self.trainer.accumulate_grad_batches
        optimizer, lr = optimizer_for_groups(
            self.optimizer_factory, groups, global_batch, self.lr_reference_batch
        )
        log.info("lr %.5g for a global batch of %d, %d heads", lr, global_batch, len(self.branches))
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total = int(self.trainer.estimated_stepping_batches)
        batches = self.trainer.num_training_batches
        per_epoch = None
        if math.isfinite(batches) and batches > 0 and (self.trainer.max_epochs or -1) >= 0:
            per_epoch = math.ceil(batches / self.trainer.accumulate_grad_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total, steps_per_epoch=per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_groups(self) -> list[list[int]]:
        """Return the optimizer parameter-group indices of each branch."""
        out, start = [], 0
        for count in self.group_counts:
            out.append(list(range(start, start + count)))
            start += count
        return out

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip each head's gradients on its own (by norm or value), as a run alone would."""
        if not gradient_clip_val:
            return
        for branch in self.branches:
            params = [p for p in branch.head.parameters() if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    # -- evaluation -----------------------------------------------------------------------------------
    def _begin(self, split: str) -> None:
        """Point every job's evaluator at the split's annotations."""
        ann_file = evaluated_annotations(self.trainer.datamodule, split)
        self.memo.clear()
        for variant in self.variants:
            variant.evaluator.bind(ann_file, self.label_to_cat_id)
            variant.evaluator.reset()
        self._ground_truth = None if ann_file is None else str(ann_file)

    def _evaluate_batch(self, batch, batch_idx: int) -> None:
        """Detect once, let each branch score the detections, and hand each job its own scores."""
        images, targets = batch
        sizes = [tuple(im.shape[-2:]) for im in images]
        to_sizes = original_sizes(images, targets)
        thresholds = {variant.evaluator.mask_threshold for variant in self.variants}
        lean = sizes == to_sizes and len(thresholds) == 1
        with box_mask_output(self.trunk, lean, min(thresholds, default=0.5)):
            detections, inputs = detect(self.trunk, plain_images(images))
        scores = torch.cat([d["scores"] for d in detections]) if detections else torch.zeros(0)
        counts = [len(d["boxes"]) for d in detections]
        ids = [int(t["image_id"]) for t in targets]
        for branch, variant in zip(self.branches, self.variants):
            ious, mask_score = mask_scores(scores, branch.predict(inputs), inputs.labels)
            outputs = [
                {**d, "mask_ious": i, "mask_scores": s}
                for d, i, s in zip(detections, ious.split(counts), mask_score.split(counts))
            ]
            original = to_original_frame(outputs, sizes, to_sizes)
            variant.evaluator.update([{k: v.detach().cpu() for k, v in o.items()} for o in original], ids)
            for callback in variant.callbacks:
                callback.on_validation_batch_end(self.trainer, self, outputs, batch, batch_idx)

    def _end(self, split: str) -> None:
        """Compute every job's metrics, log them to its loggers and hand its evaluation to its callbacks."""
        for index, variant in enumerate(self.variants):
            result = variant.evaluator.compute()
            logged = {f"{split}/{k}": v for k, v in logged_metrics(result.metrics).items()}
            if self.logger is not None:
                prefixed = {variant_key(index, k): v for k, v in logged.items()}
                self.logger.log_metrics({**prefixed, "epoch": self.current_epoch}, step=self.global_step)
            evaluation = Evaluation(
                split,
                self.current_epoch,
                self.global_step,
                result,
                self._ground_truth,
                index,
                variant.loggers,
            )
            self.last_evaluations[index] = evaluation
            for callback in variant.callbacks:
                callback.on_evaluation_end(self.trainer, self, evaluation)
            for callback in self.trainer.callbacks:  # the pass's own (VariantCheckpoints)
                if isinstance(callback, EvaluationCallback):
                    callback.on_evaluation_end(self.trainer, self, evaluation)
        self.memo.clear()

    def on_validation_epoch_start(self) -> None:
        self._begin("val")
        for variant in self.variants:
            for callback in variant.callbacks:
                callback.on_validation_epoch_start(self.trainer, self)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            for variant in self.variants:
                variant.evaluator.reset()
            return
        self._end("val")
