"""The files of every evaluation: `<split>_metrics.json` and the evaluated COCO results JSON."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from msr.files import write_json_atomic
from msr.layout import metrics_name, results_name
from msr.training.callbacks.base import Evaluation, EvaluationCallback


class EvaluationFiles(EvaluationCallback):
    """On rank 0, after every evaluation, write into `folder` (atomically):

    `<split>_metrics.json`  {"split", "epoch", "global_step", "ann_file" (the annotations evaluated
                            against), every metric of the evaluation};
    `bbox_results.json`, `segm_results.json`  the COCO results that were evaluated (if `save_results`).
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
