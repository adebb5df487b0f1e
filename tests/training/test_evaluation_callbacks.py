"""One validation with the real Trainer: a single forward pass per batch feeds the evaluator, and the
evaluation reaches the callbacks (metrics and results files, figures) through `on_evaluation_end`."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import torch
from support.tiny_nets import tiny_net

from msr.data.datamodules import SyntheticDataModule
from msr.evaluation.evaluator import COCOEvaluator
from msr.training.callbacks.base import Evaluation, EvaluationCallback
from msr.training.callbacks.evaluation_files import EvaluationFiles
from msr.training.callbacks.figures import EvaluationFigures
from msr.training.module import MSRModule


class Recorder(EvaluationCallback):
    """Keeps every evaluation it is handed."""

    def __init__(self) -> None:
        self.seen: list[Evaluation] = []

    def on_evaluation_end(self, trainer, pl_module, evaluation) -> None:
        self.seen.append(evaluation)


def test_validation_hands_its_one_forward_pass_to_files_and_figures(tmp_path):
    data = SyntheticDataModule(
        num_train=2, num_val=3, image_size=64, cache_dir=str(tmp_path / "cache"), batch_size=2,
        eval_batch_size=2, num_workers=0, pin_memory=False, persistent_workers=False,
    )
    torch.manual_seed(0)
    module = MSRModule(
        tiny_net(data.num_classes), evaluator=COCOEvaluator(), class_names=data.class_names,
        label_to_cat_id=data.label_to_cat_id,
    )
    forwards = []
    module.net.register_forward_pre_hook(lambda *_: forwards.append(1))
    recorder = Recorder()
    callbacks = [
        EvaluationFiles(tmp_path / "eval"),
        EvaluationFigures(tmp_path / "figures", num_images=2, min_side=64),
        recorder,
    ]
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=callbacks, enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=data, verbose=False)

    assert len(forwards) == 2  # 3 pictures in batches of 2; the figures did not run the net again
    assert len(recorder.seen) == 1 and recorder.seen[0] is module.last_evaluation
    evaluation = recorder.seen[0]
    assert evaluation.split == "val" and evaluation.global_step == 0
    record = json.loads((tmp_path / "eval" / "val_metrics.json").read_text())
    assert record["split"] == "val" and record["segm/AP"] == evaluation.result.metrics["segm/AP"]
    segm = json.loads((tmp_path / "eval" / "segm_results.json").read_text())
    assert segm == evaluation.result.results["segm"]
    samples = sorted((tmp_path / "figures" / "step_0000000" / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["1.png", "2.png"]  # the first pictures the validation saw
    assert (tmp_path / "figures" / "step_0000000" / "per_class_ap.csv").is_file()
