"""msr-eval: evaluate a trained checkpoint, or score an existing COCO results JSON.

    msr-eval ckpt_path=outputs/quickstart/<run>/checkpoints/best.ckpt     # the data it was trained on
    msr-eval ckpt_path=best.ckpt data=coco data.root=/datasets/coco evaluation.upper_bound=true
    msr-eval results=segm_results.json ann_file=annotations/instances_val2017.json

Prints its run folder first (`outputs/eval/<date>_<time>/`, or hydra.run.dir) and what it wrote there last:
the COCO tables and the metrics table; `eval/<split>_metrics.json` and, in checkpoint mode, the results JSON
files beside it and `figures/step_<N>/` (N: the checkpoint's training step; the calibration plot and
sample pictures); `eval/scored_metrics.json` in scoring mode; `evaluate.log`. The run holds
its folder while it runs (msr.run_lock): a second run in the same folder stops with one line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from msr.cli.common import CONFIG_DIR, output_line, run_dir, say, to_dict
from msr.cli.entry import run_entry, user_errors
from msr.cli.typos import check_job_overrides
from msr.errors import EvaluationError
from msr.evaluation.tables import metrics_table
from msr.files import write_json_atomic
from msr.layout import RunLayout, existing_checkpoint
from msr.run_lock import hold_folder

# Each mode imports what it needs in its function: scoring a results file needs neither Lightning nor
# the model (torch), so it starts in a fraction of the time a checkpoint's evaluation needs.
if TYPE_CHECKING:
    import lightning.pytorch as pl

    from msr.training.module import MSRModule

SPLITS = ("val", "test")
log = logging.getLogger(__name__)


def check_same_classes(module: MSRModule, datamodule: pl.LightningDataModule, ckpt_path: str) -> None:
    """Raise EvaluationError if the data's categories differ from those the checkpoint was trained on."""
    trained = module.label_to_cat_id
    data = datamodule.label_to_cat_id
    if trained is not None and trained != data:
        raise EvaluationError(
            f"{ckpt_path}: trained on {len(trained)} categories {module.class_names[1:6]}..., "
            f"but the data has {len(data)} {datamodule.class_names[1:6]}...; pick the matching data config"
        )


def data_config(cfg: DictConfig, module: MSRModule, ckpt_path: str) -> DictConfig:
    """Return the data config to evaluate on.

    With `data=checkpoint` (the default, marked `from_checkpoint`): the training run's data config stored
    in the checkpoint, with the other keys of `cfg.data` (given as `+data.<key>=<value>`) replacing its own.
    With any other data choice: `cfg.data` as composed.
    """
    if not cfg.data.get("from_checkpoint"):
        return cfg.data
    stored = module.hparams.get("data_config")
    if stored is None:
        raise EvaluationError(
            f"{ckpt_path}: the checkpoint stores no data config; choose the data with data=<choice>"
        )
    changes = {k: v for k, v in to_dict(cfg.data).items() if k != "from_checkpoint"}
    return OmegaConf.merge(OmegaConf.create(stored), changes)


def evaluate_checkpoint(cfg: DictConfig, folder: Path) -> dict[str, float]:
    """Return the metrics of the checkpoint `cfg.ckpt_path` on `cfg.split` of the configured data."""
    existing_checkpoint(cfg.ckpt_path)  # a missing file is named before Lightning and torch load
    import lightning.pytorch as pl
    from hydra.utils import instantiate

    from msr.training.assembly import build_callbacks
    from msr.training.checkpoints import load_module

    if cfg.split not in SPLITS:
        raise EvaluationError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    pl.seed_everything(cfg.seed, verbose=False)
    module = load_module(cfg.ckpt_path, evaluator=instantiate(cfg.evaluation), trust_pickle=cfg.trust_pickle)
    node = data_config(cfg, module, cfg.ckpt_path)
    log.info("data: %s", node.get("_target_"))
    datamodule = instantiate(node, _convert_="all")
    check_same_classes(module, datamodule, str(cfg.ckpt_path))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg.callbacks, cfg.trainer), default_root_dir=str(folder)
    )
    run = trainer.validate if cfg.split == "val" else trainer.test
    run(module, datamodule=datamodule, verbose=False)
    return module.last_evaluation.result.metrics


def score_results(cfg: DictConfig, folder: Path) -> dict[str, float]:
    """Return the metrics of the results JSON `cfg.results` against `cfg.ann_file` (COCO tables printed)."""
    if not cfg.results or not cfg.ann_file:
        raise EvaluationError(
            "give ckpt_path=<checkpoint> to evaluate a model, or results=<results.json> "
            "ann_file=<instances.json> to score existing results"
        )
    from msr.evaluation.scoring import score_results_file

    evaluation = cfg.evaluation
    result = score_results_file(
        cfg.results,
        cfg.ann_file,
        iou_types=to_dict(cfg.iou_types),
        backend=evaluation.backend,
        print_fn=print if evaluation.print_tables else None,
        calibration=bool(evaluation.calibration),
        upper_bound=bool(evaluation.upper_bound),
        bootstrap=int(evaluation.get("bootstrap", 0)),
    )
    record: dict[str, Any] = {"results": str(cfg.results), "ann_file": str(cfg.ann_file), **result.metrics}
    write_json_atomic(record, RunLayout(folder).scored_metrics)
    return result.metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Run msr-eval for `cfg`; return the metrics and print the summary table."""
    check_job_overrides(cfg, "msr-eval")
    folder = run_dir()
    from msr.distributed import get_rank

    if get_rank() == 0:
        say(f"msr-eval: run folder {folder}")
    with hold_folder(folder, "msr-eval"):  # one run per folder: a second one stops with one line
        metrics = evaluate_checkpoint(cfg, folder) if cfg.ckpt_path else score_results(cfg, folder)
    if get_rank() == 0:
        say(metrics_table(metrics, f"msr-eval: {cfg.ckpt_path or cfg.results}"))
        say(output_line("msr-eval", folder))
    return metrics


def evaluate_job(cfg: DictConfig) -> None:
    """Run one msr-eval job (`evaluate` with its errors as one line): Hydra's task function."""
    with user_errors("msr-eval"):
        evaluate(cfg)


hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")(evaluate_job)


def main() -> None:
    """Console entry point of msr-eval (errors before the job starts are one line too)."""
    run_entry("msr-eval", hydra_main)


if __name__ == "__main__":
    main()
