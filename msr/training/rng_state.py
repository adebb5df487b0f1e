"""The random number generators' states in a checkpoint, so that a resumed run draws what the uninterrupted
run would have drawn: the RoIs each step samples, the order of the training pictures, the random
transforms, and the seeds of the data-loader workers (each worker's seed derives from a number the loader
draws from torch's generator when an epoch's iterator is created; Lightning's worker init function seeds
NumPy and `random` in the worker from it).

`RngStateCallback` writes the states of torch (CPU and every CUDA device), NumPy and Python's `random`
under `checkpoint["rng_states"]` and sets them back as the checkpoint is loaded, before the training data's
first iterator of the resumed run is created. They are stored as tensors and plain data, so that the
checkpoint still loads with `torch.load(weights_only=True)`.

A checkpoint written at the end of a training epoch (msr's `last.ckpt`) resumes bit for bit on one
process: nothing draws random numbers between that write and the next epoch's iterator. A checkpoint
written in the middle of an epoch (SIGTERM, an error) restarts that epoch's data, so that run differs from
an uninterrupted one. Under DDP the checkpoint holds rank 0's states and every rank takes them (as
`seed_everything` gave every rank the same seed).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

log = logging.getLogger(__name__)

#: The checkpoint key of the states.
CHECKPOINT_KEY = "rng_states"


def capture_rng_states() -> dict[str, Any]:
    """Return the current states of torch (CPU and CUDA), NumPy and `random` as tensors and plain data."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(python_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Set the generators to `states` (from capture_rng_states); return None.

    CUDA states are set only when this machine has as many devices as the run that saved them.
    """
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    python = states["python"]
    python_state = tuple(int(v) for v in python["state"].tolist())
    random.setstate((python["version"], python_state, python["gauss_next"]))
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RngStateCallback(pl.Callback):
    """Saves the generators' states in every checkpoint and sets them back when a run resumes from one.

    A checkpoint without them (written before they were saved) resumes as before, with a freshly seeded
    generator.
    """

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Add the generators' states to `checkpoint`."""
        checkpoint[CHECKPOINT_KEY] = capture_rng_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Set the generators to the states of `checkpoint`, when it has them."""
        states = checkpoint.get(CHECKPOINT_KEY)
        if states is None:
            log.info("the checkpoint holds no random generator states: the resumed run draws other numbers")
            return
        restore_rng_states(states)
