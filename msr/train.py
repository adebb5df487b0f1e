"""msr-train: train and evaluate MS R-CNN / Mask R-CNN from the Hydra configs in conf/.

msr-train experiment=quickstart
msr-train data=coco data.root=/datasets/coco backbone=resnet50 schedule=coco_1x trainer=ddp
msr-train --multirun head=maskiou,none seed=0,1,2
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig

from msr.callbacks import EvaluationFigures, PreemptionCheckpoint
from msr.ddp import ddp_job_scope, wait_for_children
from msr.evaluation import save_json_atomic
from msr.module import MSRModule
from msr.runtime import (
    CONFIG_DIR,
    build_datamodule,
    build_logger,
    metrics_table,
    resolve_ckpt_path,
    run_dir,
    to_dict,
    user_errors,
)
from msr.tracking import finish_wandb, run_metadata

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, datamodule) -> MSRModule:
    """Return the LightningModule for the configured model, optimizer, schedule and evaluation."""
    model_cfg = {**to_dict(cfg.model), "num_classes": datamodule.num_classes}
    return MSRModule(
        model_cfg=model_cfg,
        optim=to_dict(cfg.optim),
        schedule=to_dict(cfg.schedule),
        evaluation=to_dict(cfg.evaluation),
        nonfinite_loss=cfg.nonfinite_loss,
        class_names=datamodule.class_names,
        label_to_cat_id=datamodule.label_to_cat_id,
        data_cfg=to_dict(cfg.data),
    )


def build_callbacks(cfg: DictConfig, folder: Path, with_logger: bool) -> list[pl.Callback]:
    """Return the checkpoint callback (best by segm AP + last, written atomically), the evaluation
    figures (PNG files, and W&B media when logging to W&B) and, with a logger, an lr monitor."""
    checkpoints = folder / "checkpoints"
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(
            dirpath=checkpoints,
            filename="best",
            monitor=cfg.checkpoint.monitor,
            mode=cfg.checkpoint.mode,
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
    ]
    if cfg.checkpoint.save_last:  # the latest state, whatever its AP: what a resume needs
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoints,
                filename="last",
                monitor=None,
                save_top_k=1,
                every_n_train_steps=cfg.checkpoint.every_n_steps,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            )
        )
    figures = cfg.figures
    if figures.enabled:
        callbacks.append(
            EvaluationFigures(folder, figures.num_images, figures.score_thresh, figures.min_side)
        )
    if with_logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    callbacks.append(PreemptionCheckpoint(folder))
    if cfg.trainer.get("enable_progress_bar", True):  # tqdm also in log files (rich draws only on a terminal)
        callbacks.append(TQDMProgressBar())
    return callbacks


def train(cfg: DictConfig) -> float | None:
    """Train, evaluate and return the value of cfg.optimized_metric (None if it was not computed).

    Under DDP, every rank runs this; only rank 0 writes the run's files and prints the table.
    """
    pl.seed_everything(cfg.seed, workers=True)
    folder = run_dir()
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    module.output_dir = folder
    logger = build_logger(cfg)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, folder, bool(logger)),
        logger=logger,
        default_root_dir=str(folder),
    )
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, folder)
    config = {"config": to_dict(cfg), "run": run_metadata()}
    if trainer.is_global_zero:
        save_json_atomic(config, folder / "run_config.json")
    try:
        if logger:
            logger.log_hyperparams(config)
        with ddp_job_scope(cfg, folder):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            evaluated_at = module.last_metrics.get("_global_step") if module.last_metrics else None
            if cfg.final_eval and datamodule.val_ann is not None and evaluated_at != trainer.global_step:
                trainer.validate(module, datamodule=datamodule, verbose=False)
            wait_for_children(trainer)
    finally:
        finish_wandb(trainer.loggers)
    metrics = module.last_metrics
    if trainer.is_global_zero and metrics:
        print(metrics_table(metrics, f"{cfg.name}: val metrics after {trainer.global_step} steps ({folder})"))
    key = cfg.optimized_metric.removeprefix("val/")
    value = metrics.get(key) if metrics else None
    return float(value) if value is not None else None  # NaN tells a sweeper the trial failed


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point of msr-train; returns the optimized metric for sweepers."""
    with user_errors("msr-train"):
        return train(cfg)


if __name__ == "__main__":
    main()
