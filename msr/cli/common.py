"""What the Hydra entry points share: the config folder, the run folder, user errors, and building the
trainer's parts (callbacks, logger, net) from their config nodes."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from msr.errors import UserError
from msr.models import WeightsError, freeze_all_but_maskiou, load_weights

log = logging.getLogger(__name__)

#: The Hydra configs of the repository (absolute, so console scripts find them from any folder).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

#: Errors a user can cause; entry points turn them into one clear line and exit code 2.
USER_ERRORS = (UserError, WeightsError, FileNotFoundError)


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
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


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
        hint = ""
        if ckpt_path == "last":
            hint = " (ckpt_path=last needs the run's folder: pass hydra.run.dir=<that run>)"
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    return str(path)


def build_callbacks(callbacks: DictConfig | None, trainer: DictConfig) -> list[pl.Callback]:
    """Return the callbacks of a `callbacks` config node (one `_target_` node per name; null ones are off).

    A progress bar is left out when `trainer.enable_progress_bar` is false (Lightning refuses the pair).
    """
    built = []
    for node in (callbacks or {}).values():
        if node is None:
            continue
        callback = instantiate(node)
        if isinstance(callback, pl.callbacks.ProgressBar) and not trainer.get("enable_progress_bar", True):
            continue
        built.append(callback)
    return built


def build_logger(node: DictConfig | None) -> Any:
    """Return the configured Lightning logger, or False for logger=none."""
    if not node or "_target_" not in node:
        return False
    return instantiate(node)


def build_net(cfg: DictConfig, num_classes: int) -> Any:
    """Return the detector of `cfg.model` for `num_classes` (categories + background), with the weights
    `cfg.init` names loaded and, if asked, everything but the MaskIoU head frozen."""
    with open_dict(cfg):
        cfg.model.num_classes = int(num_classes)
    net = instantiate(cfg.model)
    init = cfg.init
    files = {"backbone": init.backbone_weights, "maskrcnn": init.maskrcnn_weights, "msr": init.weights}
    for kind, path in files.items():
        if path:
            load_weights(net, path, kind=kind, allow_class_mismatch=init.allow_class_mismatch)
    if init.freeze_except_maskiou:
        freeze_all_but_maskiou(net)
    return net
