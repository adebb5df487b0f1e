"""Building a run's parts from their config nodes: the detector with its initial weights, the callbacks,
the loggers, and the checkpoint a run resumes from. Shared by msr-train, msr-eval, msr-predict and the
head stage of the head-only protocol; nothing here edits a config."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msr.layout import RunLayout, run_dir

if TYPE_CHECKING:
    import lightning.pytorch as pl

log = logging.getLogger(__name__)


def build_callbacks(callbacks: Mapping[str, Any] | None, trainer: Mapping[str, Any]) -> list[pl.Callback]:
    """Return the callbacks of a `callbacks` config node (one `_target_` node per name; null ones are off).

    A progress bar is left out when `trainer.enable_progress_bar` is false (Lightning refuses the pair).
    """
    import lightning.pytorch as pl

    built = []
    for node in (callbacks or {}).values():
        if node is None:
            continue
        callback = instantiate(node)
        if isinstance(callback, pl.callbacks.ProgressBar) and not trainer.get("enable_progress_bar", True):
            continue
        built.append(callback)
    return built


def build_loggers(node: Mapping[str, Any] | None) -> list[Any]:
    """Return the run's Lightning loggers: the configured one and, beside any that does not write CSV,
    a ResumableCSVLogger writing `<run dir>/csv/metrics.csv`, so that every logged scalar is in the run
    folder whatever the logger. logger=none: no logger at all (an empty list)."""
    from msr.training.csv_logger import ResumableCSVLogger

    if not node or "_target_" not in node:
        return []
    configured = instantiate(node)
    if isinstance(configured, ResumableCSVLogger):
        return [configured]
    csv = ResumableCSVLogger(save_dir=str(RunLayout(run_dir()).path("csv")), name="", version="")
    return [configured, csv]


def net_config(model: Any, num_classes: int) -> dict[str, Any]:
    """Return the resolved `model` config node as plain data with `num_classes` filled in (what
    checkpoints store to rebuild the detector)."""
    plain = OmegaConf.to_container(model, resolve=True) if OmegaConf.is_config(model) else dict(model)
    return {**plain, "num_classes": int(num_classes)}


def build_net(cfg: DictConfig, num_classes: int) -> Any:
    """Return the detector of `cfg.model` for `num_classes` (categories + background), with the weights
    `cfg.init` names loaded and, if asked, everything but the MaskIoU head frozen."""
    from msr.models import freeze_all_but_maskiou, load_weights

    net = instantiate(cfg.model, num_classes=int(num_classes))
    init = cfg.init
    files = {"backbone": init.backbone_weights, "maskrcnn": init.maskrcnn_weights, "msr": init.weights}
    for kind, path in files.items():
        if path:
            load_weights(
                net,
                path,
                kind=kind,
                allow_class_mismatch=init.allow_class_mismatch,
                trust_pickle=init.trust_pickle,
            )
    if init.freeze_except_maskiou:
        freeze_all_but_maskiou(net)
    return net


def resolve_ckpt_path(ckpt_path: str | None, folder: str | Path) -> str | None:
    """Return the checkpoint to resume from: None, a path, "last" -> <folder>/checkpoints/last.ckpt,
    or "auto" -> that file when it exists (a requeued or re-run job resumes), else None (fresh start)."""
    if ckpt_path in (None, "", "null"):
        return None
    last = RunLayout(folder).last_checkpoint
    if ckpt_path == "auto":
        if last.is_file():
            log.info("ckpt_path=auto: resuming from %s", last)
            return str(last)
        return None
    path = last if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = ""
        if ckpt_path == "last":
            hint = " (ckpt_path=last needs the run's folder: pass hydra.run.dir=<that run>)"
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    return str(path)
