"""The loader settings the tests give data modules (they have no defaults: the configs hold them)."""

from __future__ import annotations

#: Batches of 2 in this process, no worker processes.
LOADER = {
    "batch_size": 2,
    "eval_batch_size": None,
    "num_workers": 0,
    "pin_memory": False,
    "persistent_workers": False,
}
