"""The files of every evaluation: `<split>_metrics.json` and the evaluated COCO results JSON."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn

from msr.evaluation.tables import metrics_table
from msr.files import write_json_atomic
from msr.layout import metrics_name, results_name
from msr.training.callbacks.base import Evaluation, EvaluationCallback


class EvaluationFiles(EvaluationCallback):
    """On rank 0, after every evaluation, write into `folder` (atomically):

    `<split>_metrics.json`  {"split", "epoch", "global_step", "ann_file" (the annotations evaluated
                            against), every metric of the evaluation};
    `bbox_results.json`, `segm_results.json`  the COCO results that were evaluated (if `save_results`);
    and the evaluation's table into the run's log file (train.log), not on the console.
    """

    def __init__(self, folder: str | Path, save_results: bool = True) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.save_results = bool(save_results)

    def on_evaluation_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, evaluation: Evaluation
    ) -> None:
        if not trainer.is_global_zero:
            return
        result = evaluation.result
        if self.save_results and result.results is not None:
            for iou_type, results in result.results.items():
                write_json_atomic(results, self.folder / results_name(iou_type))
        record = {
            "split": evaluation.split,
            "epoch": evaluation.epoch,
            "global_step": evaluation.global_step,
            "ann_file": evaluation.ground_truth,
            **result.metrics,
        }
        write_json_atomic(record, self.folder / metrics_name(evaluation.split))
        if trainer.state.fn == TrainerFn.FITTING:  # evaluations while training (programs print the last)
            step, epoch = evaluation.global_step, evaluation.epoch
            title = f"{evaluation.split} metrics at global step {step} (epoch {epoch})"
            to_log_files(metrics_table(result.metrics, title))


def to_log_files(text: str) -> None:
    """Write `text` to the root logger's log files only (the run's train.log), not to the console."""
    logger = logging.getLogger(__name__)
    record = logger.makeRecord(__name__, logging.INFO, __file__, 0, "\n" + text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
