"""msr-train: train and evaluate MS R-CNN / Mask R-CNN from the Hydra configs in msr/conf/.

msr-train experiment=quickstart
msr-train data=coco data.root=/datasets/coco backbone=resnet50 schedule=coco_1x trainer=ddp
msr-train --multirun head=maskiou,none seed=0,1,2
msr-train study=input_designs experiment=synthetic_cpu_study protocol=head_only   # heads on shared trunks
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from msr.cli.common import CONFIG_DIR, check_config_values, output_line, run_dir, say, to_dict
from msr.cli.entry import run_entry, sigterm_exit, user_errors
from msr.cli.typos import check_job_overrides
from msr.distributed import get_rank
from msr.run_lock import hold_run_folder, is_resuming

# Lightning, torch and the model are imported where a job starts working: the program names its run
# folder (and refuses a typo) before loading them, and `--help` never does.
if TYPE_CHECKING:
    import lightning.pytorch as pl

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
    "protocol.head_max_epochs": 0,
}


def train(cfg: DictConfig) -> float | None:
    """Train, evaluate and return the value of cfg.optimized_metric (None if it was not computed).

    `protocol=head_only` jobs go to the head stage (msr.studies.head_stage): their MaskIoU head trains on
    a frozen trunk, alone or, in a sweep, in one pass with the jobs that share that trunk. Under DDP every
    rank runs this; only rank 0 writes the run's files and prints the table.
    """
    check_job_overrides(cfg, "msr-train")
    check_config_values(cfg, WHOLE_NUMBERS, ignore_missing=("model.num_classes",))
    if get_rank() == 0:
        say(f"msr-train: run folder {run_dir()}")
        if hint := sizing_hint(cfg):
            log.warning(hint)
    if cfg.protocol.head_only:  # it holds its job folder itself, for as long as its pass runs
        from msr.cli.ddp import ddp_job_scope
        from msr.studies.head_stage import run_head_only_job

        return run_head_only_job(cfg, task_function=train_job, ddp_scope=ddp_job_scope)
    folder = run_dir()
    with hold_run_folder(folder, resuming=is_resuming(cfg.ckpt_path, folder), overwrite=bool(cfg.overwrite)):
        return train_end_to_end(cfg)


def sizing_hint(cfg: DictConfig) -> str | None:
    """Return one line when a real data set runs the COCO-sized model on a CPU without a recipe (None: not).

    `data=balloon` alone keeps the defaults made for COCO (800 px pictures, a 47 M parameter detector):
    hours on a CPU, and a loss that diverges at the quickstart's learning rate; the recipe sized for it is
    `experiment=balloon_cpu_study`.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choices = HydraConfig.get().runtime.choices
    on_cpu = cfg.trainer.get("accelerator") == "cpu"
    if choices.get("data") != "balloon" or choices.get("experiment") or not on_cpu:
        return None
    if cfg.model.min_size < 800:
        return None
    return (
        f"data=balloon without an experiment trains the COCO-sized model ({cfg.model.min_size} px pictures); "
        "on a CPU use experiment=balloon_cpu_study (ResNet-18 FPN, 320 px, sized for 2 cores)"
    )


def train_end_to_end(cfg: DictConfig) -> float | None:
    """Train the whole detector of `cfg` and evaluate it; return the optimized metric (None: not computed)."""
    import lightning.pytorch as pl
    from hydra.utils import instantiate

    from msr.cli.ddp import ddp_job_scope
    from msr.distributed import wait_for_children
    from msr.evaluation.tables import metrics_table
    from msr.files import write_json_atomic
    from msr.layout import RunLayout
    from msr.training.assembly import build_callbacks, build_loggers, build_net, net_config, resolve_ckpt_path
    from msr.training.checkpoints import check_resumable
    from msr.training.resume import ExactResume
    from msr.training.rng_state import RngStateCallback
    from msr.training.tracking import finish_wandb, run_metadata

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
        net_config=net_config(cfg.model, datamodule.num_classes),
        class_names=datamodule.class_names,
        label_to_cat_id=datamodule.label_to_cat_id,
        data_config=to_dict(cfg.data),
    )
    loggers = build_loggers(cfg.get("logger"))
    callbacks = [ExactResume(), RngStateCallback(), *build_callbacks(cfg.callbacks, cfg.trainer)]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(folder)
    )
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, folder)
    if ckpt_path is not None:
        check_resumable(ckpt_path, module)
    config = {"config": to_dict(cfg), "run": run_metadata()}
    if trainer.is_global_zero:
        write_json_atomic(config, RunLayout(folder).run_config)
    try:
        for logger in loggers:
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
        say(metrics_table(metrics, f"{cfg.name}: val metrics after {trainer.global_step} steps ({folder})"))
        summary = {"name": cfg.name, "global_step": trainer.global_step, "metrics": metrics}
        write_json_atomic(summary, RunLayout(folder).summary)
    value = metrics.get(cfg.optimized_metric.removeprefix("val/"))
    return float(value) if value is not None else None  # NaN tells a sweeper the trial failed


def train_job(cfg: DictConfig) -> float | None:
    """Run one msr-train job (`train` with its errors as one line, SIGTERM as exit status 143); return the
    optimized metric for sweepers. Hydra's task function, also of the trunks the head-only protocol trains."""
    with user_errors("msr-train"), sigterm_exit("msr-train"):
        value = train(cfg)
    if get_rank() == 0:
        say(output_line("msr-train", run_dir()))
    return value


hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")(train_job)


def main() -> None:
    """Console entry point of msr-train (errors before the job starts are one line too)."""
    run_entry("msr-train", hydra_main)


if __name__ == "__main__":
    main()
