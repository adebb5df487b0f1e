"""MSRModule with the real Lightning Trainer: non-finite losses are stopped or skipped, never trained on."""

from __future__ import annotations

from functools import partial

import lightning.pytorch as pl
import pytest
import torch
from support.tiny_nets import tiny_net
from torch.utils.data import DataLoader

from msr.training.module import MSRModule, NonFiniteLossError


def tiny_module(**kwargs) -> MSRModule:
    """Return the module of `tiny_net` with SGD (lr 0.02 per 16 pictures)."""
    return MSRModule(tiny_net(), partial(torch.optim.SGD, lr=0.02, momentum=0.9), **kwargs)


def nan_batches(steps: int) -> DataLoader:
    """Return a loader of `steps` one-image batches whose pixels are NaN (image id 7)."""
    image = torch.full((3, 64, 64), float("nan"))
    target = {
        "image_id": 7,
        "boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]),
        "labels": torch.tensor([1]),
        "masks": torch.zeros(1, 64, 64, dtype=torch.uint8),
    }
    return DataLoader([([image], [target])] * steps, batch_size=None)


def fit(module: MSRModule, steps: int) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=nan_batches(steps))
    return trainer


def test_nonfinite_loss_stops_naming_step_and_images():
    module = tiny_module(nonfinite_loss="stop")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at global step 0 \(image ids \[7\]\)"):
        fit(module, 2)


def test_nonfinite_loss_skip_leaves_weights_untouched():
    module = tiny_module(nonfinite_loss="skip")
    before = {k: v.clone() for k, v in module.net.state_dict().items() if v.is_floating_point()}
    fit(module, 3)
    assert module.skipped_steps == 3
    after = module.net.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k]) and "running" not in k]
    assert not changed, changed[:3]


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="nonfinite_loss must be one of"):
        tiny_module(nonfinite_loss="ignore")
