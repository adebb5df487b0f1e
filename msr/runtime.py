"""Helpers shared by the entry points: run folder, user-error reporting, building the pieces from config."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msr.data import DatasetError
from msr.evaluation import EvaluationError
from msr.models import WeightsError

log = logging.getLogger(__name__)

#: The Hydra configs of the repository (absolute, so console scripts find them from any folder).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")

#: Errors a user can cause; entry points turn them into one clear line and exit code 2.
USER_ERRORS = (DatasetError, EvaluationError, WeightsError, FileNotFoundError)


def run_dir() -> Path:
    """Return the folder of this run (Hydra's output dir; the current folder outside Hydra)."""
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path.cwd()


@contextlib.contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Turn a user-caused error into `program: error: message` on stderr and exit status 2."""
    try:
        yield
    except USER_ERRORS as err:
        print(f"{program}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def to_dict(node: Any) -> Any:
    """Return a resolved plain-Python copy of an OmegaConf node (or the value itself)."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """Return the configured LightningDataModule."""
    return instantiate(cfg.data, _convert_="all")


def build_logger(cfg: DictConfig) -> Any:
    """Return the configured Lightning logger, or False for logger=none."""
    node = cfg.get("logger")
    if not node or "_target_" not in node:
        return False
    return instantiate(node)


def resolve_ckpt_path(ckpt_path: str | None, folder: Path) -> str | None:
    """Return the checkpoint to resume from: None, a path, "last" -> <folder>/checkpoints/last.ckpt,
    or "auto" -> that file when it exists (a requeued or re-run job resumes), else None (fresh start)."""
    if ckpt_path in (None, "", "null"):
        return None
    last = folder / "checkpoints" / "last.ckpt"
    if ckpt_path == "auto":
        if last.is_file():
            log.info("ckpt_path=auto: resuming from %s", last)
            return str(last)
        return None
    path = last if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = (
            " (ckpt_path=last needs the run's folder: pass hydra.run.dir=<that run>)"
            if ckpt_path == "last"
            else ""
        )
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    return str(path)


def load_checkpoint(path: str | Path, **overrides: Any) -> Any:
    """Return the MSRModule saved in the msr-train checkpoint `path` (on CPU; hparams in `overrides` win).

    Raises FileNotFoundError for a missing file and EvaluationError naming the file for anything else.
    """
    from msr.module import MSRModule

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return MSRModule.load_from_checkpoint(path, map_location="cpu", **overrides)
    except Exception as err:  # unpickling, zip, missing hparams, state_dict mismatch: all mean the same
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EvaluationError(f"{path}: not a checkpoint written by msr-train ({reason})") from err


def metrics_table(metrics: Mapping[str, float], title: str) -> str:
    """Return a small Markdown table of bbox AP, segm AP and the MaskIoU calibration figures."""
    rows = [
        ("bbox AP", "bbox/AP"),
        ("segm AP", "segm/AP"),
        ("segm AP50", "segm/AP50"),
        ("segm AP75", "segm/AP75"),
        ("segm AP (class score only, no rescoring)", "segm_class_score/AP"),
        ("segm AP (true-IoU upper bound)", "segm_upper_bound/AP"),
        ("Pearson(true IoU, class score)", "calib/pearson_class_score"),
        ("Pearson(true IoU, mask score)", "calib/pearson_mask_score"),
        ("Spearman(true IoU, class score)", "calib/spearman_class_score"),
        ("Spearman(true IoU, mask score)", "calib/spearman_mask_score"),
        ("MAE of predicted IoU", "calib/mae_pred_iou"),
        ("matched detections", "calib/num_matched"),
    ]
    lines = [f"\n{title}", "| metric | value |", "| --- | --- |"]
    for label, key in rows:
        if key in metrics and metrics[key] is not None:
            value = metrics[key]
            text = (
                f"{value:.4f}" if isinstance(value, float) and not float(value).is_integer() else f"{value}"
            )
            lines.append(f"| {label} | {text} |")
    return "\n".join(lines)
