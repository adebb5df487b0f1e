"""Every use msr makes of a Lightning or Hydra internal (a private attribute, a state layout, an error text),
in one place where no public API serves; tests/config/test_compat.py fails, naming what changed, when an
installed version no longer matches. pyproject.toml bounds both packages to the majors tested.

Nothing is imported at module level: importing msr.compat costs nothing, and msr.models, msr.data and
msr.evaluation never import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

# -- Lightning: the training state and its loop counters ------------------------------------------------

#: Where a Lightning checkpoint keeps the fit loop's state, and the keys of it msr rewrites on resume.
FIT_LOOP = ("loops", "fit_loop")
EPOCH_PROGRESS = "epoch_progress"
BATCH_PROGRESS = "epoch_loop.batch_progress"
SCHEDULER_PROGRESS = "epoch_loop.scheduler_progress"
OPTIMIZER_PROGRESS = "epoch_loop.automatic_optimization.optim_progress"
VAL_BATCH_PROGRESS = "epoch_loop.val_loop.batch_progress"
EPOCH_LOOP_STATE = "epoch_loop.state_dict"
#: The loggers' step counter: in EPOCH_LOOP_STATE of a checkpoint and on the trainer's epoch loop.
LOGGING_STEP = "_batches_that_stepped"


def training_state(trainer: Any) -> dict[str, Any]:
    """Return the full training state as `trainer.save_checkpoint` writes it, without its barrier across
    processes (Lightning's checkpoint connector: no public API builds the dict alone)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def fit_loop_state(checkpoint: MutableMapping[str, Any]) -> MutableMapping[str, Any] | None:
    """Return the fit loop's state inside a checkpoint dict (None when it holds none)."""
    state = checkpoint.get(FIT_LOOP[0], {}).get(FIT_LOOP[1])
    return state if isinstance(state, MutableMapping) else None


def saved_at_epoch_end(fit_loop: MutableMapping[str, Any]) -> bool:
    """Return True when a checkpoint's fit-loop state was saved at the end of a training epoch
    (the epoch is processed but not yet completed) after its last batch."""
    total = fit_loop.get(EPOCH_PROGRESS, {}).get("total", {})
    batches = fit_loop.get(BATCH_PROGRESS, {})
    started = total.get("started", 0)
    return (
        started > 0
        and total.get("ready") == started == total.get("processed")
        and total.get("completed") == started - 1
        and bool(batches.get("is_last_batch"))
    )


def as_next_epoch_start(fit_loop: MutableMapping[str, Any]) -> None:
    """Rewrite, in place, an epoch-end fit-loop state into the state at the start of the next epoch:
    the epoch completed, and the per-epoch counters of batches, scheduler and optimizer steps at 0."""
    epochs = fit_loop[EPOCH_PROGRESS]
    for part in ("total", "current"):
        epochs[part]["completed"] = epochs[part]["processed"]
    batches = fit_loop[BATCH_PROGRESS]
    batches["current"] = {key: 0 for key in batches["current"]}
    batches["is_last_batch"] = False
    scheduler = fit_loop.get(SCHEDULER_PROGRESS)
    if scheduler:
        scheduler["current"] = {key: 0 for key in scheduler["current"]}
    optim = fit_loop.get(OPTIMIZER_PROGRESS, {}).get("optimizer", {})
    for progress in optim.values():
        progress["current"] = {key: 0 for key in progress["current"]}
    val_batches = fit_loop.get(VAL_BATCH_PROGRESS)
    if val_batches:  # counts the validations of the epoch: none yet
        val_batches["total"] = {key: 0 for key in val_batches["total"]}


def saved_logging_step(fit_loop: MutableMapping[str, Any]) -> int | None:
    """Return the loggers' step counter a fit-loop state holds (None when it holds none)."""
    step = fit_loop.get(EPOCH_LOOP_STATE, {}).get(LOGGING_STEP)
    return None if step is None else int(step)


def set_logging_step(trainer: Any, step: int) -> None:
    """Set the step counter the trainer's loggers log with (no public setter)."""
    setattr(trainer.fit_loop.epoch_loop, LOGGING_STEP, int(step))


# -- Lightning: the loggers' lazily made experiment -------------------------------------------------------


def cached_experiment(logger: Any) -> Any:
    """Return the experiment object (W&B run, CSV writer) a Lightning logger has made, None before it made
    one; unlike `logger.experiment` this never makes one."""
    return getattr(logger, "_experiment", None)


def set_cached_experiment(logger: Any, experiment: Any) -> None:
    """Make `experiment` the logger's experiment object (None: it makes a new one when next asked)."""
    logger._experiment = experiment


# -- Hydra: the current job's config, failed jobs, error texts --------------------------------------------


def hydra_job_config() -> Any:
    """Return Hydra's live config of the current job, `hydra` node included (None outside a Hydra job):
    changes to its `hydra.run.dir` reach the processes Lightning relaunches for DDP."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.instance().cfg if HydraConfig.initialized() else None


@contextlib.contextmanager
def use_hydra_config(config: Any) -> Iterator[None]:
    """Within this block, Hydra's current job config is `config` (as `hydra_job_config` returns it)."""
    from hydra.core.hydra_config import HydraConfig

    saved = HydraConfig.instance().cfg
    HydraConfig.instance().cfg = config
    try:
        yield
    finally:
        HydraConfig.instance().cfg = saved


def job_error(job_return: Any) -> BaseException | None:
    """Return the exception a failed Hydra job raised (None when it did not fail with one); the public
    `JobReturn.return_value` re-raises it and writes to stderr."""
    value = getattr(job_return, "_return_value", None)
    return value if isinstance(value, BaseException) else None


#: Hydra's hint at the end of an instantiation error's first line.
_FULL_ERROR_HINT = ", set env var HYDRA_FULL_ERROR"
#: The start of the line where Hydra's instantiation error names the config node.
_FULL_KEY = "full_key:"
#: What Hydra's instantiation error says when a `_target_` cannot be imported.
_TARGET_NOT_FOUND = "Error locating target"


def instantiation_error(err: BaseException) -> tuple[str, str, bool]:
    """Return what Hydra's InstantiationException text says: (the config node it names, '' when none; its
    first line without Hydra's HYDRA_FULL_ERROR hint; whether the `_target_` could not be imported)."""
    lines = str(err).splitlines()
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith(_FULL_KEY)), "")
    first = lines[0].split(_FULL_ERROR_HINT)[0] if lines else type(err).__name__
    return key, first, _TARGET_NOT_FOUND in first
