"""What the Hydra entry points share: the config folder, the run folder, user errors, and building the
trainer's parts (callbacks, logger, net) from their config nodes."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from msr.errors import UserError

# Lightning and msr.models (torch) are imported by the functions that use them: msr-eval's scoring of a
# results file needs neither, and starts in a fraction of the time.
if TYPE_CHECKING:
    import lightning.pytorch as pl

log = logging.getLogger(__name__)

#: The Hydra configs of the repository (absolute, so console scripts find them from any folder).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

#: Errors a user can cause; entry points turn them into one clear line and exit code 2. With
#: msr.models loaded, its WeightsError too (see `user_error_types`).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Return USER_ERRORS and, once msr.models is loaded (nothing raises it before), its WeightsError."""
    models = sys.modules.get("msr.models")
    weights_error = getattr(models, "WeightsError", None)
    return USER_ERRORS + ((weights_error,) if weights_error is not None else ())


def run_dir() -> Path:
    """Return the folder of this run (Hydra's output dir; the current folder outside Hydra)."""
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path.cwd()


@contextlib.contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Turn a user-caused error into `program: error: message` on stderr and exit status 2.

    User errors: `user_error_types()`, an OSError on a named file (unwritable folder, full disk), a config
    node that cannot be built (see msr.cli.failures). The line also ends the run's log file (`train.log`);
    with HYDRA_FULL_ERROR=1 the traceback is printed before it. Any other exception is logged with its
    traceback to the log file and raised again (Hydra prints it).
    """
    from msr.cli import failures

    failures.restore_hydra_full_error()
    try:
        yield
    except Exception as err:  # SystemExit and KeyboardInterrupt pass through
        message = failures.user_error_message(err, user_error_types())
        if message is None:
            failures.log_to_files(f"{program}: stopped by an unexpected error", exc_info=err)
            raise
        failures.fail(program, message, err)


def check_config_values(
    cfg: DictConfig, whole_numbers: dict[str, int | None], ignore_missing: tuple[str, ...] = ()
) -> None:
    """Raise ConfigError, before any work, for a mandatory value left `???` (but `ignore_missing`, which
    the program fills in) or a key of `whole_numbers` that is not a whole number >= its least value
    (None: any; null values pass)."""
    from msr.errors import ConfigError

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if k not in ignore_missing)
    if missing:
        keys = ", ".join(missing)
        raise ConfigError(f"missing values: {keys}; give them on the command line, e.g. {missing[0]}=...")
    for key, least in whole_numbers.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or (least is not None and value < least):
            floor = f" >= {least}" if least is not None else ""
            raise ConfigError(f"{key} must be a whole number{floor}, got {value!r}")


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


def build_logger(node: DictConfig | None) -> Any:
    """Return the configured Lightning logger, or False for logger=none."""
    if not node or "_target_" not in node:
        return False
    return instantiate(node)


def build_net(cfg: DictConfig, num_classes: int) -> Any:
    """Return the detector of `cfg.model` for `num_classes` (categories + background), with the weights
    `cfg.init` names loaded and, if asked, everything but the MaskIoU head frozen."""
    from msr.models import freeze_all_but_maskiou, load_weights

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
