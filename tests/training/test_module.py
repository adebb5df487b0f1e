"""MSRModule with the real Lightning Trainer: non-finite losses are stopped or skipped, never trained on."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from msr.module import MSRModule, NonFiniteLossError

MODEL = dict(
    num_classes=3, backbone="resnet18", norm="bn", fpn_channels=16, box_head_dim=32, mask_head_channels=16,
    mask_head_convs=1, maskiou_conv_channels=16, maskiou_fc_dim=32, min_size=64, max_size=64,
    rpn_post_nms_top_n_train=32, box_batch_size_per_image=16,
)  # fmt: skip


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
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=nan_batches(steps))
    return trainer


def test_nonfinite_loss_stops_naming_step_and_images():
    module = MSRModule(MODEL, nonfinite_loss="stop")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at global step 0 \(image ids \[7\]\)"):
        fit(module, 2)


def test_nonfinite_loss_skip_leaves_weights_untouched():
    module = MSRModule(MODEL, nonfinite_loss="skip")
    before = {k: v.clone() for k, v in module.model.state_dict().items() if v.is_floating_point()}
    fit(module, 3)
    assert module.skipped_steps == 3
    after = module.model.state_dict()
    changed = [
        k
        for k, v in before.items()
        if not torch.equal(
            v,
            after[k],
        )
        and "running" not in k
    ]
    assert not changed, changed[:3]


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="nonfinite_loss must be one of"):
        MSRModule(MODEL, nonfinite_loss="ignore")
