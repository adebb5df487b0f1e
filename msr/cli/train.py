"""msr-train: train and evaluate MS R-CNN / Mask R-CNN from the Hydra configs in conf/.

    msr-train experiment=quickstart
    msr-train data=coco data.root=/datasets/coco backbone=resnet50 schedule=coco_1x trainer=ddp
    msr-train --multirun head=maskiou,none seed=0,1,2
"""

from __future__ import annotations

import logging

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from msr.cli.common import (
    CONFIG_DIR,
    build_callbacks,
    build_logger,
    build_net,
    check_config_values,
    resolve_ckpt_path,
    run_dir,
    to_dict,
    user_errors,
)
from msr.cli.ddp import ddp_job_scope, wait_for_children
from msr.cli.failures import run_entry, sigterm_exit
from msr.cli.trunk import prepare_trunk
from msr.errors import ConfigError
from msr.evaluation.tables import metrics_table
from msr.files import write_json_atomic
from msr.training.checkpoints import check_resumable
from msr.training.resume import ExactResume
from msr.training.tracking import finish_wandb, run_metadata

log = logging.getLogger(__name__)

#: Keys that must hold whole numbers (or null), checked before any work: `key: least value` (None: any).
WHOLE_NUMBERS = {
    "schedule.max_steps": -1,
    "schedule.max_epochs": -1,
    "schedule.check_val_every_n_epoch": 1,
    "trainer.accumulate_grad_batches": 1,
    "trainer.num_nodes": 1,
    "trainer.log_every_n_steps": 1,
    "seed": None,
    "protocol.head_max_epochs": 1,
}


def train(cfg: DictConfig) -> float | None:
    """Train, evaluate and return the value of cfg.optimized_metric (None if it was not computed).

    Under DDP every rank runs this; only rank 0 writes the run's files and prints the table.
    """
    check_config_values(cfg, WHOLE_NUMBERS, ignore_missing=("model.num_classes",))
    pl.seed_everything(cfg.seed, workers=True)
    folder = run_dir()
    if cfg.protocol.head_only and not cfg.protocol.get("trunk"):
        use_trunk(cfg)
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
    callbacks = [ExactResume(), *build_callbacks(cfg.callbacks, cfg.trainer)]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(folder)
    )
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, folder)
    if ckpt_path is not None:
        check_resumable(ckpt_path, module)
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


def use_trunk(cfg: DictConfig) -> None:
    """Head-only protocol: start from the job's cached Mask R-CNN trunk (trained first if needed) and
    train only the MaskIoU head. Records the trunk in `cfg.protocol.trunk` (so DDP children reuse it)."""
    if cfg.model.get("maskiou_head") is None:
        raise ConfigError("protocol=head_only trains a MaskIoU head on a frozen trunk: not with head=none")
    if cfg.protocol.get("head_max_epochs") is not None and cfg.schedule.max_steps > 0:
        raise ConfigError(
            "protocol.head_max_epochs needs a schedule by epochs; this one stops at "
            f"schedule.max_steps={cfg.schedule.max_steps}"
        )
    trunk = prepare_trunk(cfg, HydraConfig.get().overrides.task, CONFIG_DIR)
    with open_dict(cfg):
        cfg.protocol.trunk = trunk
        cfg.init.weights = trunk["checkpoint"]
        cfg.init.freeze_except_maskiou = True
        if cfg.protocol.get("head_max_epochs") is not None:  # the head's own, shorter, schedule
            cfg.schedule.max_epochs = cfg.protocol.head_max_epochs
    epochs, steps = cfg.schedule.max_epochs, cfg.schedule.max_steps
    length = f"{steps} step{'s' * (steps != 1)}" if steps > 0 else f"{epochs} epoch{'s' * (epochs != 1)}"
    log.info("head-only protocol: the head trains %s on the frozen trunk %s", length, trunk["checkpoint"])


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry point of msr-train; returns the optimized metric for sweepers."""
    with user_errors("msr-train"), sigterm_exit("msr-train"):
        return train(cfg)


def main() -> None:
    """Console entry point of msr-train (errors before the job starts are one line too)."""
    run_entry("msr-train", hydra_main)


if __name__ == "__main__":
    main()
