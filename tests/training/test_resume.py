"""Resuming with the real Trainer, in process: the resumed module starts from the checkpoint's weights,
optimizer moments and norm statistics, and, with the generators' states in the checkpoint, a run stopped
at an epoch end and resumed ends with the uninterrupted run's weights, bit for bit."""

from __future__ import annotations

import copy
import random
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from support.tiny_nets import tiny_net
from torch.utils.data import DataLoader, Dataset

from msr.training.module import MSRModule
from msr.training.resume import ExactResume
from msr.training.rng_state import CHECKPOINT_KEY, RngStateCallback, capture_rng_states, restore_rng_states


class Squares(Dataset):
    """6 pictures of 64 px with one or two squares of classes 1-2; each read adds uniform noise drawn
    from torch's generator (as a random transform would)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        gen = torch.Generator().manual_seed(index)
        image = torch.rand(3, 64, 64, generator=gen) * 0.2 + torch.rand(3, 64, 64) * 0.05
        boxes, labels, masks = [], [], []
        for k in range(1 + index % 2):
            x, y = 6 + 24 * k + index, 8 + 3 * index
            mask = torch.zeros(64, 64, dtype=torch.uint8)
            mask[y : y + 20, x : x + 20] = 1
            image[k, mask.bool()] += 0.7
            boxes.append([x, y, x + 20, y + 20])
            labels.append(1 + k)
            masks.append(mask)
        target = {
            "image_id": index,
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor(labels),
            "masks": torch.stack(masks),
        }
        return image.clamp(0, 1), target


def loader() -> DataLoader:
    """Return a shuffled loader of 3 batches of 2 (the order is drawn from torch's generator)."""
    return DataLoader(Squares(), batch_size=2, shuffle=True, collate_fn=lambda batch: tuple(zip(*batch)))


def module() -> MSRModule:
    """Return tiny_net's module with AdamW (moments to restore) and a per-step cosine schedule."""
    torch.manual_seed(0)
    return MSRModule(tiny_net(3), partial(torch.optim.AdamW, lr=1e-3), cosine, lr_reference_batch=None)


def cosine(optimizer, total_steps: int, steps_per_epoch: int | None = None):
    """Return a cosine schedule over the run's steps (msr's scheduler factory signature)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


class Probe(pl.Callback):
    """Records, at the first training batch, the module's state and the optimizer's state."""

    def __init__(self) -> None:
        self.seen: dict | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen is None:
            self.seen = {
                "state_dict": {k: v.clone() for k, v in pl_module.state_dict().items()},
                "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict()),  # live tensors
                "global_step": trainer.global_step,
            }


class StepLogger(Logger):
    """Records the step of every logged metric and every `rewind(step)` (msr's CSV logger forgets the rows
    beyond it)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[str, list[int]] = {}
        self.rewound: list[int] = []

    name, version = "steps", 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        for key in metrics:
            self.steps.setdefault(key, []).append(step)

    def rewind(self, step: int) -> None:
        self.rewound.append(step)


class EveryEpoch(ModelCheckpoint):
    """A ModelCheckpoint that keeps every epoch's file (its own class: its own state key)."""


def fit(
    folder: Path,
    ckpt_path: Path | None = None,
    rng: bool = True,
    probe: Probe | None = None,
    logger: StepLogger | None = None,
) -> MSRModule:
    """Train `module()` for 2 epochs of 3 steps (max_steps set, as msr-train does) with msr-train's
    last.ckpt callback (written at every epoch end) and epoch<N>.ckpt files kept beside it, in `folder`;
    resume from `ckpt_path`; the learning rate and the loss go to `logger` every step; return the trained
    module."""
    pl.seed_everything(0, workers=True, verbose=False)
    every_epoch = dict(monitor=None, save_on_train_epoch_end=True, enable_version_counter=False)
    every_epoch["auto_insert_metric_name"] = False
    callbacks = [
        ExactResume(),
        ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1, **every_epoch),
        EveryEpoch(dirpath=folder, filename="epoch{epoch}", save_top_k=-1, **every_epoch),
        LearningRateMonitor(logging_interval="step"),
    ]
    if rng:
        callbacks.insert(1, RngStateCallback())
    if probe is not None:
        callbacks.append(probe)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, max_steps=300, logger=logger or StepLogger(), callbacks=callbacks,
        log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        deterministic=True,
    )
    trained = module()
    trainer.fit(trained, train_dataloaders=loader(), ckpt_path=ckpt_path)
    assert trainer.global_step == 6
    return trained


def test_generator_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    np.random.normal()  # a cached Gaussian in NumPy's state
    states = capture_rng_states()
    expected = torch.rand(3), np.random.rand(3), np.random.normal(), random.random(), random.gauss(0, 1)
    torch.save({CHECKPOINT_KEY: states}, tmp_path / "states.pt")
    loaded = torch.load(tmp_path / "states.pt", weights_only=True)[CHECKPOINT_KEY]
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_states(loaded)
    again = torch.rand(3), np.random.rand(3), np.random.normal(), random.random(), random.gauss(0, 1)
    assert torch.equal(again[0], expected[0]) and np.array_equal(again[1], expected[1])
    assert again[2:] == expected[2:]


def test_cuda_generator_states_are_saved_and_set_back_on_as_many_devices(monkeypatch):
    """The CUDA branch, without a GPU: torch.cuda's functions replaced by recorders."""
    saved = [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)]
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", calls.append)
    states = capture_rng_states()
    assert states["cuda"] is saved
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    restore_rng_states(states)
    assert calls == [saved]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # another machine: left as seeded
    restore_rng_states(states)
    restore_rng_states({k: v for k, v in states.items() if k != "cuda"})  # saved on a CPU
    assert calls == [saved]


def epoch_end_loop_state(epochs: int = 1, batches: int = 3) -> dict:
    """Return the fit-loop state Lightning saves at the end of training epoch `epochs` - 1 (processed, not
    completed, after its last batch), as msr's last.ckpt holds it."""
    counts = {"ready": batches, "started": batches, "processed": batches, "completed": batches}
    epoch = {"ready": epochs, "started": epochs, "processed": epochs, "completed": epochs - 1}
    steps = {"ready": batches, "completed": batches}
    return {
        "epoch_progress": {"total": dict(epoch), "current": dict(epoch)},
        "epoch_loop.batch_progress": {"total": dict(counts), "current": dict(counts), "is_last_batch": True},
        "epoch_loop.scheduler_progress": {"total": dict(steps), "current": dict(steps)},
        "epoch_loop.automatic_optimization.optim_progress": {
            "optimizer": {"step": {"total": dict(steps), "current": dict(steps)}}
        },
        "epoch_loop.val_loop.batch_progress": {"total": dict(counts), "current": dict(counts)},
        "epoch_loop.state_dict": {"_batches_that_stepped": batches * epochs},
    }


def test_only_an_epoch_end_loop_state_is_rewritten_as_the_next_epochs_start():
    from msr.compat import as_next_epoch_start, saved_at_epoch_end

    assert saved_at_epoch_end(epoch_end_loop_state()) and saved_at_epoch_end(epoch_end_loop_state(2))
    assert not saved_at_epoch_end({})  # a checkpoint without loop state
    mid_epoch = epoch_end_loop_state()
    mid_epoch["epoch_loop.batch_progress"]["is_last_batch"] = False
    completed = epoch_end_loop_state()  # written after the epoch completed (at the end of training)
    completed["epoch_progress"]["total"]["completed"] = 1
    not_ready = epoch_end_loop_state()
    not_ready["epoch_progress"]["total"]["ready"] = 2
    unprocessed = epoch_end_loop_state()
    unprocessed["epoch_progress"]["total"]["processed"] = 0
    never_started = epoch_end_loop_state()
    never_started["epoch_progress"]["total"] = {"ready": 0, "started": 0, "processed": 0, "completed": -1}
    for state in (mid_epoch, completed, not_ready, unprocessed, never_started):
        assert not saved_at_epoch_end(state)

    state = epoch_end_loop_state()
    as_next_epoch_start(state)
    assert state["epoch_progress"]["total"] == {"ready": 1, "started": 1, "processed": 1, "completed": 1}
    assert state["epoch_progress"]["current"]["completed"] == 1
    zeros = {"ready": 0, "started": 0, "processed": 0, "completed": 0}
    batches = state["epoch_loop.batch_progress"]
    assert batches["current"] == zeros and batches["total"]["completed"] == 3 and not batches["is_last_batch"]
    assert state["epoch_loop.scheduler_progress"]["current"] == {"ready": 0, "completed": 0}
    optimizer = state["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]
    assert optimizer["current"] == {"ready": 0, "completed": 0} and optimizer["total"]["completed"] == 3
    assert state["epoch_loop.val_loop.batch_progress"]["total"] == zeros
    assert not saved_at_epoch_end(state)


class Rewinder:
    """A logger that records the steps it is rewound to."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def rewind(self, step: int) -> None:
        self.steps.append(step)


def test_loading_a_checkpoint_rewinds_every_logger_that_can_to_its_global_step():
    from types import SimpleNamespace

    rewinders = [Rewinder(), Rewinder()]
    trainer = SimpleNamespace(loggers=[rewinders[0], object(), SimpleNamespace(rewind=3), rewinders[1]])
    callback = ExactResume()
    callback.on_load_checkpoint(trainer, None, {"global_step": 7})  # no loop state: nothing to rewrite
    callback.on_load_checkpoint(trainer, None, {"loops": {}})  # no step recorded: from the start
    assert rewinders[0].steps == rewinders[1].steps == [7, 0]
    assert callback._logging_step is None


def test_an_epoch_end_checkpoint_puts_back_the_loggers_step_at_the_first_batch_only(caplog):
    import logging
    from types import SimpleNamespace

    state = epoch_end_loop_state(2)
    checkpoint = {"loops": {"fit_loop": state}, "global_step": 6}
    epoch_loop = SimpleNamespace(_batches_that_stepped=7)  # Lightning's restart advanced it once
    trainer = SimpleNamespace(loggers=[Rewinder()], fit_loop=SimpleNamespace(epoch_loop=epoch_loop))
    callback = ExactResume()
    with caplog.at_level(logging.DEBUG, logger="msr.training.resume"):
        callback.on_load_checkpoint(trainer, None, checkpoint)
    assert [r.getMessage() for r in caplog.records] == ["resuming at the epoch after global step 6"]
    assert state["epoch_progress"]["total"]["completed"] == 2  # rewritten as the next epoch's start
    assert trainer.loggers[0].steps == [6]
    callback.on_train_batch_start(trainer, None)
    assert epoch_loop._batches_that_stepped == 6
    epoch_loop._batches_that_stepped = 8
    callback.on_train_batch_start(trainer, None)
    assert epoch_loop._batches_that_stepped == 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Return the uninterrupted run's weights and its checkpoint of epoch 0's end (where a run killed
    right after that write resumes from)."""
    root = tmp_path_factory.mktemp("resume")
    logger = StepLogger()
    whole = fit(root / "whole", logger=logger).state_dict()
    return {"root": root, "whole": whole, "epoch0": root / "whole" / "epoch0.ckpt", "logged": logger.steps}


def test_resumed_run_starts_from_the_checkpoints_weights_moments_and_norm_statistics(runs):
    checkpoint = torch.load(runs["epoch0"], map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3
    probe = Probe()
    fit(runs["root"] / "probe", ckpt_path=runs["epoch0"], probe=probe)
    seen = probe.seen
    assert seen is not None and seen["global_step"] == 3
    saved = checkpoint["state_dict"]
    assert seen["state_dict"].keys() == saved.keys()
    norms = [k for k in saved if k.endswith(("running_mean", "running_var"))]
    assert norms and any(not torch.equal(saved[k], torch.zeros_like(saved[k])) for k in norms)
    for key, value in saved.items():
        assert torch.equal(seen["state_dict"][key], value), key
    # fresh weights would differ from the trained ones: the comparison can fail
    fresh = module().state_dict()
    assert any(not torch.equal(fresh[k], saved[k]) for k in saved if saved[k].is_floating_point())
    moments = checkpoint["optimizer_states"][0]["state"]
    restored = seen["optimizer"]["state"]
    assert moments and restored.keys() == moments.keys()
    for index, state in moments.items():
        assert float(restored[index]["step"]) == float(state["step"]) == 3
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(restored[index][name], state[name]), (index, name)
    saved_lr = checkpoint["optimizer_states"][0]["param_groups"][0]["lr"]
    assert seen["optimizer"]["param_groups"][0]["lr"] == saved_lr


def test_resumed_run_ends_with_the_uninterrupted_runs_weights_bit_for_bit(runs):
    checkpoint = torch.load(runs["epoch0"], map_location="cpu", weights_only=True)
    assert set(checkpoint[CHECKPOINT_KEY]) >= {"torch", "numpy", "python"}
    logger = StepLogger()
    resumed = fit(runs["root"] / "resumed", ckpt_path=runs["epoch0"], logger=logger).state_dict()
    whole = runs["whole"]
    differ = [k for k in whole if not torch.equal(whole[k], resumed[k])]
    assert not differ, differ[:5]
    # the loggers forget what follows the checkpoint's step, and the resumed steps are logged at the steps
    # the uninterrupted run logged them (Lightning's restart advances the loggers' step once: put back)
    assert logger.rewound == [3]
    for key in ("train/loss", "lr-AdamW"):
        assert logger.steps[key] == runs["logged"][key][3:] == [3, 4, 5], key


def test_without_the_generators_states_the_resumed_run_differs(runs, tmp_path):
    """The check above can fail: a checkpoint without the states resumes with other RoIs and order."""
    checkpoint = torch.load(runs["epoch0"], map_location="cpu", weights_only=True)
    del checkpoint[CHECKPOINT_KEY]
    torch.save(checkpoint, tmp_path / "no_rng.ckpt")
    resumed = fit(tmp_path / "run", ckpt_path=tmp_path / "no_rng.ckpt").state_dict()
    whole = runs["whole"]
    assert any(not torch.equal(whole[k], resumed[k]) for k in whole if whole[k].is_floating_point())


def test_a_checkpoint_without_generator_states_says_the_resumed_run_draws_other_numbers(caplog):
    import logging

    before = torch.get_rng_state()
    with caplog.at_level(logging.INFO, logger="msr.training.rng_state"):
        RngStateCallback().on_load_checkpoint(None, None, {"global_step": 3})
    assert [r.getMessage() for r in caplog.records] == [
        "the checkpoint holds no random generator states: the resumed run draws other numbers"
    ]
    assert torch.equal(torch.get_rng_state(), before)
