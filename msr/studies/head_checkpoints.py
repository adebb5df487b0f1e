"""Checkpoints of a shared head pass: one complete msr checkpoint per job, written into its own run folder.

The head stage's Trainer holds the frozen trunk and one MaskIoU branch per job, with one optimizer whose
parameter groups belong to the branches in turn. Each job's `checkpoints/last.ckpt` and `best.ckpt` must
be what the job would have written alone: the detector's state_dict with that job's head (`net.*`, so
msr-eval, msr-predict and `init.weights` read it like any msr-train checkpoint), its own optimizer and
scheduler state, and the loop state. `split_checkpoint` cuts a job's checkpoint out of the pass's state,
`merge_checkpoints` joins the jobs' checkpoints into the pass's state again (resuming a pass).
`SplitCheckpointIO` does both behind Lightning's public checkpoint API, and `VariantCheckpoints` decides
when each job's files are written (as Lightning's ModelCheckpoint does for a run alone).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from msr.errors import ConfigError
from msr.training.callbacks.base import Evaluation, EvaluationCallback
from msr.training.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger(__name__)

#: Prefixes of the pass module's state: the trunk and branch `i` (`branches.<i>.head.*`).
TRUNK_PREFIX = "trunk."
#: The state_dict prefix of a job's head in an msr checkpoint (MSRModule's `net.roi_heads.maskiou_head`).
HEAD_PREFIX = "net.roi_heads.maskiou_head."
NET_PREFIX = "net."
#: Per-parameter-group lists in the state of torch's learning-rate schedulers.
PER_GROUP_KEYS = ("base_lrs", "_last_lr", "lr_lambdas", "min_lrs")
#: The path a resumed pass is loaded from (SplitCheckpointIO merges the jobs' checkpoints).
RESUME = "head_stage:resume"
#: The path that writes every job's last.ckpt.
LAST = "head_stage:last"


def best_token(index: int) -> str:
    """Return the path that writes job `index`'s best.ckpt."""
    return f"head_stage:best:{index}"


def last_token(index: int) -> str:
    """Return the path that writes job `index`'s last.ckpt alone."""
    return f"head_stage:last:{index}"


def branch_prefix(index: int) -> str:
    """Return the state_dict prefix of branch `index`'s head in the pass module."""
    return f"branches.{index}.head."


def split_optimizer_state(state: Mapping[str, Any], groups: Sequence[int]) -> dict[str, Any]:
    """Return a torch optimizer state_dict holding only the parameter groups `groups` (indices renumbered)."""
    chosen = [copy.copy(state["param_groups"][g]) for g in groups]
    mapping: dict[int, int] = {}
    for group in chosen:
        group["params"] = [mapping.setdefault(p, len(mapping)) for p in group["params"]]
    params = state.get("state", {})
    return {
        "state": {new: params[old] for old, new in mapping.items() if old in params},
        "param_groups": chosen,
    }


def merge_optimizer_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return one optimizer state_dict whose groups are those of `states` in turn (indices offset)."""
    merged: dict[str, Any] = {"state": {}, "param_groups": []}
    offset = 0
    for state in states:
        count = sum(len(g["params"]) for g in state["param_groups"])
        for group in state["param_groups"]:
            merged["param_groups"].append({**group, "params": [p + offset for p in group["params"]]})
        merged["state"].update({int(k) + offset: v for k, v in state.get("state", {}).items()})
        offset += count
    return merged


def _per_group(state: Any, pick: Any) -> Any:
    """Return a scheduler state with every per-group list (PER_GROUP_KEYS) passed through `pick`,
    nested schedulers (SequentialLR, ChainedScheduler) included."""
    if isinstance(state, Mapping):
        out = {}
        for key, value in state.items():
            if key in PER_GROUP_KEYS and isinstance(value, list):
                out[key] = pick(value)
            else:
                out[key] = _per_group(value, pick)
        return out
    if isinstance(state, list):
        return [_per_group(item, pick) for item in state]
    return state


def split_scheduler_state(state: Mapping[str, Any], groups: Sequence[int]) -> dict[str, Any]:
    """Return a learning-rate scheduler state_dict for the parameter groups `groups` only."""
    return _per_group(state, lambda values: [values[g] for g in groups])


def _group_lists(state: Mapping[str, Any]) -> list[list]:
    """Return the per-group lists of a scheduler state, in the order `_per_group` visits them."""
    found: list[list] = []
    _per_group(state, lambda values: found.append(values) or values)
    return found


def merge_scheduler_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return one scheduler state_dict whose per-group lists are those of `states` in turn (the rest is
    the first state's: every job of a pass follows one schedule)."""
    columns = zip(*(_group_lists(state) for state in states))
    joined = iter([[value for values in column for value in values] for column in columns])
    return _per_group(states[0], lambda _: next(joined))


@dataclass(frozen=True)
class JobCheckpoint:
    """What one job's checkpoints hold of its own: its module hyper-parameters (MSRModule's) and where its
    files go (None: not written)."""

    hyper_parameters: dict[str, Any]
    last: Path | None
    best: Path | None
    monitor: str = "val/segm/AP"
    mode: str = "max"
    every_n_train_steps: int | None = None
    on_train_epoch_end: bool = True


def split_checkpoint(
    checkpoint: Mapping[str, Any],
    index: int,
    groups: Sequence[Sequence[int]],
    job: JobCheckpoint,
    callback_key: str | None = None,
) -> dict[str, Any]:
    """Return job `index`'s msr checkpoint from the pass's `checkpoint`.

    `groups[i]` are the optimizer parameter groups of job `i`; `callback_key` is VariantCheckpoints'
    state key (its per-job state is cut too).
    """
    state = checkpoint["state_dict"]
    prefix = branch_prefix(index)
    weights = {
        NET_PREFIX + k.removeprefix(TRUNK_PREFIX): v for k, v in state.items() if k.startswith(TRUNK_PREFIX)
    }
    weights.update(
        {HEAD_PREFIX + k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    )
    out = {
        k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states", "lr_schedulers")
    }
    out["state_dict"] = weights
    out["hyper_parameters"] = job.hyper_parameters
    out["optimizer_states"] = [
        split_optimizer_state(s, groups[index]) for s in checkpoint.get("optimizer_states", [])
    ]
    out["lr_schedulers"] = [
        split_scheduler_state(s, groups[index]) for s in checkpoint.get("lr_schedulers", [])
    ]
    callbacks = dict(checkpoint.get("callbacks", {}))
    if callback_key in callbacks:
        callbacks[callback_key] = {"best": [callbacks[callback_key]["best"][index]]}
    out["callbacks"] = callbacks
    return out


def merge_checkpoints(
    checkpoints: Sequence[Mapping[str, Any]], callback_key: str | None = None
) -> dict[str, Any]:
    """Return the pass's state from its jobs' checkpoints (in job order); they must be at the same step."""
    steps = {int(c.get("global_step", -1)) for c in checkpoints}
    if len(steps) != 1:
        raise ConfigError(
            f"the jobs of this pass were saved at different steps {sorted(steps)}: cannot resume them "
            "together"
        )
    first = checkpoints[0]
    weights = {
        TRUNK_PREFIX + k.removeprefix(NET_PREFIX): v
        for k, v in first["state_dict"].items()
        if not k.startswith(HEAD_PREFIX)
    }
    for index, checkpoint in enumerate(checkpoints):
        prefix = branch_prefix(index)
        weights.update(
            {
                prefix + k.removeprefix(HEAD_PREFIX): v
                for k, v in checkpoint["state_dict"].items()
                if k.startswith(HEAD_PREFIX)
            }
        )
    out = {k: v for k, v in first.items() if k not in ("state_dict", "optimizer_states", "lr_schedulers")}
    out["state_dict"] = weights
    count = len(first.get("optimizer_states", []))
    out["optimizer_states"] = [
        merge_optimizer_states([c["optimizer_states"][i] for c in checkpoints]) for i in range(count)
    ]
    count = len(first.get("lr_schedulers", []))
    out["lr_schedulers"] = [
        merge_scheduler_states([c["lr_schedulers"][i] for c in checkpoints]) for i in range(count)
    ]
    callbacks = dict(first.get("callbacks", {}))
    if callback_key in callbacks:
        callbacks[callback_key] = {"best": [c["callbacks"][callback_key]["best"][0] for c in checkpoints]}
    out["callbacks"] = callbacks
    return out


class SplitCheckpointIO(AtomicCheckpointIO):
    """Lightning's checkpoint I/O for a shared head pass: the pass's state goes to its jobs' own files.

    `save_checkpoint(state, LAST)` writes every job's last.ckpt, `last_token(i)` job i's alone and
    `best_token(i)` its best.ckpt; `load_checkpoint(RESUME)` merges the jobs' `resume_from` files. Other
    paths are written as they are (atomically).
    """

    def __init__(self, jobs: Sequence[JobCheckpoint], groups: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.jobs = list(jobs)
        self.groups = [list(g) for g in groups]
        self.resume_from: list[Path] = []
        self.callback_key: str | None = None

    def targets(self, path: str) -> list[tuple[int, Path]]:
        """Return the (job index, file) pairs the special path `path` stands for."""
        if path == LAST:
            return [(i, j.last) for i, j in enumerate(self.jobs) if j.last is not None]
        kind, index = path.rsplit(":", 1)
        job = self.jobs[int(index)]
        target = job.best if kind.endswith(":best") else job.last
        return [] if target is None else [(int(index), target)]

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Write each job's share of `checkpoint` for the special `path` (or `checkpoint` to a real path)."""
        if not str(path).startswith("head_stage:"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        for index, target in self.targets(str(path)):
            part = split_checkpoint(checkpoint, index, self.groups, self.jobs[index], self.callback_key)
            super().save_checkpoint(part, target, storage_options)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Return the pass's state merged from the jobs' checkpoints (for RESUME), else the file's content."""
        if str(path) != RESUME:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        loaded = [torch.load(p, map_location="cpu", weights_only=True) for p in self.resume_from]
        return merge_checkpoints(loaded, self.callback_key)


class VariantCheckpoints(EvaluationCallback):
    """Writes every job's last.ckpt (each epoch end or every N steps, as its `last_checkpoint` says) and
    best.ckpt (when its monitored metric improves), through SplitCheckpointIO's special paths."""

    def __init__(self, jobs: Sequence[JobCheckpoint]) -> None:
        super().__init__()
        self.jobs = list(jobs)
        self.best: list[float | None] = [None] * len(self.jobs)

    @property
    def state_key(self) -> str:
        return "VariantCheckpoints"

    def state_dict(self) -> dict[str, Any]:
        return {"best": list(self.best)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = list(state_dict["best"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Write the last.ckpt of the jobs that save every N steps, at those steps."""
        step = trainer.global_step
        for index, job in enumerate(self.jobs):
            if job.last is not None and job.every_n_train_steps and step % job.every_n_train_steps == 0:
                trainer.save_checkpoint(last_token(index), weights_only=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the last.ckpt of the jobs that save at each epoch end (one write for all of them)."""
        due = [
            j for j in self.jobs if j.last is not None and j.on_train_epoch_end and not j.every_n_train_steps
        ]
        if len(due) == len([j for j in self.jobs if j.last is not None]) and due:
            trainer.save_checkpoint(LAST, weights_only=False)
            return
        for index, job in enumerate(self.jobs):
            if job in due:
                trainer.save_checkpoint(last_token(index), weights_only=False)

    def on_evaluation_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, evaluation: Evaluation
    ) -> None:
        """Write job `evaluation.variant`'s best.ckpt when its monitored metric improved."""
        index = evaluation.variant
        job = self.jobs[index]
        if job.best is None or evaluation.split != "val" or trainer.sanity_checking:
            return
        value = evaluation.result.metrics.get(job.monitor.removeprefix(f"{evaluation.split}/"))
        value = float(max(value, 0.0)) if value is not None and math.isfinite(value) else 0.0
        best = self.best[index]
        better = best is None or (value > best if job.mode == "max" else value < best)
        if better:
            self.best[index] = value
            trainer.save_checkpoint(best_token(index), weights_only=False)
