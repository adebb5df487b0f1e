"""msr-eval: evaluate a trained checkpoint, or score an existing COCO results JSON.

    msr-eval ckpt_path=outputs/quickstart/<run>/checkpoints/best.ckpt     # the data it was trained on
    msr-eval ckpt_path=best.ckpt data=coco data.root=/datasets/coco evaluation.upper_bound=true
    msr-eval results=segm_results.json ann_file=annotations/instances_val2017.json

Prints the COCO tables and the calibration figures; writes `<run dir>/eval/<split>_metrics.json` and,
in checkpoint mode, the results JSON files beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msr.evaluation import EvaluationError, save_json_atomic, score_results_file
from msr.module import MSRModule
from msr.runtime import (
    CONFIG_DIR,
    load_checkpoint,
    metrics_table,
    run_dir,
    to_dict,
    user_errors,
)

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


def data_config(cfg: DictConfig, module: MSRModule) -> tuple[DictConfig, str]:
    """Return (the data config to evaluate on, 'checkpoint' or 'command line').

    Without `data=<choice>` on the command line, the training run's data config stored in the
    checkpoint is used, with the command line's `data.<key>=<value>` overrides applied; with it (or
    for a checkpoint that stores none), the composed `cfg.data`.
    """
    trained = module.hparams.get("data_cfg")
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    chosen = any(o.split("=", 1)[0].lstrip("+~") == "data" for o in task)
    if trained is None or chosen:
        return cfg.data, "command line"
    node = OmegaConf.create(trained)
    dotlist = [o.lstrip("+") for o in task if o.lstrip("+").startswith("data.")]
    if dotlist:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist(dotlist).data)
    return node, "checkpoint"


def evaluate_checkpoint(cfg: DictConfig, folder: Path) -> dict[str, float]:
    """Return the metrics of the checkpoint `cfg.ckpt_path` on `cfg.split` of the configured data."""
    ckpt = Path(cfg.ckpt_path)
    if cfg.split not in SPLITS:
        raise EvaluationError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    pl.seed_everything(cfg.seed, verbose=False)
    module = load_checkpoint(ckpt, evaluation=to_dict(cfg.evaluation))
    data_node, source = data_config(cfg, module)
    log.info("data: %s (from the %s)", data_node.get("_target_"), source)
    datamodule = instantiate(data_node, _convert_="all")
    check_same_classes(module, datamodule, str(ckpt))
    module.output_dir = folder
    trainer: pl.Trainer = instantiate(cfg.trainer, default_root_dir=str(folder))
    run = trainer.validate if cfg.split == "val" else trainer.test
    run(module, datamodule=datamodule, verbose=False)
    return {k: v for k, v in module.last_metrics.items() if not k.startswith("_")}


def score_results(cfg: DictConfig, folder: Path) -> dict[str, float]:
    """Return the metrics of the results JSON `cfg.results` against `cfg.ann_file` (COCO tables printed)."""
    if not cfg.results or not cfg.ann_file:
        raise EvaluationError(
            "give ckpt_path=<checkpoint> to evaluate a model, or results=<results.json> "
            "ann_file=<instances.json> to score existing results"
        )
    iou_types = to_dict(cfg.iou_types)
    with_segm = iou_types is None or "segm" in iou_types
    metrics = score_results_file(
        cfg.results,
        cfg.ann_file,
        iou_types=iou_types,
        backend=cfg.evaluation.backend,
        print_fn=print if cfg.evaluation.print_tables else None,
        calibration=bool(cfg.evaluation.calibration) and with_segm and _has_segm(cfg.results, iou_types),
        upper_bound=bool(cfg.evaluation.upper_bound),
    )
    save_json_atomic({"results": str(cfg.results), "ann_file": str(cfg.ann_file), **metrics},
                     folder / "eval" / "scored_metrics.json")  # fmt: skip
    return metrics


def _has_segm(results_path: str, iou_types: list[str] | None) -> bool:
    """Return True if segm is requested explicitly or the results file holds segmentations."""
    if iou_types is not None:
        return "segm" in iou_types
    from msr.evaluation import load_results

    results, _ = load_results(results_path)
    return bool(results) and "segmentation" in results[0]


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Run msr-eval for `cfg`; return the metrics and print the summary table."""
    folder = run_dir()
    metrics = evaluate_checkpoint(cfg, folder) if cfg.ckpt_path else score_results(cfg, folder)
    if pl.utilities.rank_zero_only.rank == 0:
        source = cfg.ckpt_path or cfg.results
        print(metrics_table(metrics, f"msr-eval: {source}"))
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of msr-eval."""
    with user_errors("msr-eval"):
        evaluate(cfg)


if __name__ == "__main__":
    main()
