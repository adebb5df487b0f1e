"""msr-train: train and evaluate MS R-CNN / Mask R-CNN from the Hydra configs in conf/.

    msr-train experiment=quickstart
    msr-train data=coco data.root=/datasets/coco backbone=resnet50 schedule=coco_1x trainer=ddp
    msr-train --multirun head=maskiou,none seed=0,1,2
"""

from __future__ import annotations

import hydra
import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from msr.cli.common import (
    CONFIG_DIR,
    build_callbacks,
    build_logger,
    build_net,
    resolve_ckpt_path,
    run_dir,
    to_dict,
    user_errors,
)
from msr.cli.ddp import ddp_job_scope, wait_for_children
from msr.evaluation.tables import metrics_table
from msr.files import write_json_atomic
from msr.training.tracking import finish_wandb, run_metadata


def train(cfg: DictConfig) -> float | None:
    """Train, evaluate and return the value of cfg.optimized_metric (None if it was not computed).

    Under DDP every rank runs this; only rank 0 writes the run's files and prints the table.
    """
    pl.seed_everything(cfg.seed, workers=True)
    folder = run_dir()
    datamodule = instantiate(cfg.data, _convert_="all")
    net = build_net(cfg, datamodule.num_classes)
    module = instantiate(  # not recursive: net_config and data_config are stored as plain configs
        cfg.module,
        _recursive_=False,
        _convert_="all",
        net=net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.schedule.scheduler),
        evaluator=instantiate(cfg.evaluation),
        net_config=to_dict(cfg.model),
        class_names=datamodule.class_names,
        label_to_cat_id=datamodule.label_to_cat_id,
        data_config=to_dict(cfg.data),
    )
    logger = build_logger(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg.callbacks, cfg.trainer), logger=logger,
        default_root_dir=str(folder),
    )
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, folder)
    config = {"config": to_dict(cfg), "run": run_metadata()}
    if trainer.is_global_zero:
        write_json_atomic(config, folder / "run_config.json")
    try:
        if logger:
            logger.log_hyperparams(config)
        with ddp_job_scope(cfg, folder):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            last = module.last_evaluation
            evaluated = last is not None and last.global_step == trainer.global_step
            if cfg.final_eval and datamodule.val_ann is not None and not evaluated:
                trainer.validate(module, datamodule=datamodule, verbose=False)
            wait_for_children(trainer)
    finally:
        finish_wandb(trainer.loggers)
    if module.last_evaluation is None:
        return None
    metrics = module.last_evaluation.result.metrics
    if trainer.is_global_zero:
        print(metrics_table(metrics, f"{cfg.name}: val metrics after {trainer.global_step} steps ({folder})"))
    value = metrics.get(cfg.optimized_metric.removeprefix("val/"))
    return float(value) if value is not None else None  # NaN tells a sweeper the trial failed


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point of msr-train; returns the optimized metric for sweepers."""
    with user_errors("msr-train"):
        return train(cfg)


if __name__ == "__main__":
    main()
