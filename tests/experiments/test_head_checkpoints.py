"""A shared head pass's state splits into the checkpoints its jobs would write alone, and merges back."""

from __future__ import annotations

import functools

import torch
from torch import nn

from msr.studies.head_checkpoints import JobCheckpoint, merge_checkpoints, split_checkpoint
from msr.training.optim import parameter_groups
from msr.training.schedules import warmup_cosine


def head(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def train(heads: list[nn.Module], steps: int = 3):
    """Train `heads` together with one AdamW over their groups (decay / no decay each) and the warmup-cosine
    schedule; return (optimizer, scheduler, group indices of each head)."""
    groups, owners = [], []
    for module in heads:
        own = parameter_groups(module, no_decay_norm_bias=True)
        owners.append(list(range(len(groups), len(groups) + len(own))))
        groups += own
    optimizer = torch.optim.AdamW(groups, lr=0.01, weight_decay=0.05)
    scheduler = functools.partial(
        warmup_cosine, unit="step", warmup=2, warmup_factor=0.1, min_lr_factor=0.02
    )(optimizer, total_steps=10, steps_per_epoch=None)
    data = torch.randn(steps, 5, 3, generator=torch.Generator().manual_seed(0))
    for x in data:
        loss = sum(m(x).square().mean() for m in heads)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler, owners


def pass_state(heads, optimizer, scheduler) -> dict:
    state = {"trunk.w": torch.ones(2)}
    for index, module in enumerate(heads):
        state.update({f"branches.{index}.head.{k}": v for k, v in module.state_dict().items()})
    return {
        "state_dict": state,
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [scheduler.state_dict()],
        "callbacks": {"VariantCheckpoints": {"best": [0.25, 0.5]}, "Other": {"x": 1}},
        "global_step": 3,
        "loops": {"fit_loop": {"x": 1}},
        "epoch": 0,
    }


def same(a, b) -> bool:
    """Return True when two nested states hold equal values (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_jobs_share_of_the_pass_is_what_it_writes_alone_and_the_shares_merge_back():
    together = [head(0), head(1)]
    optimizer, scheduler, owners = train(together)
    state = pass_state(together, optimizer, scheduler)
    jobs = [JobCheckpoint({"net_config": {"job": i}}, None, None) for i in range(2)]
    parts = [split_checkpoint(state, i, owners, jobs[i], "VariantCheckpoints") for i in range(2)]

    alone = [head(1)]
    alone_optimizer, alone_scheduler, _ = train(alone)
    second = parts[1]
    assert second["hyper_parameters"] == {"net_config": {"job": 1}}
    assert set(second["state_dict"]) == {"net.w"} | {
        f"net.roi_heads.maskiou_head.{k}" for k in alone[0].state_dict()
    }
    for key, value in alone[0].state_dict().items():
        assert torch.equal(second["state_dict"][f"net.roi_heads.maskiou_head.{key}"], value)
    assert same(second["optimizer_states"][0], alone_optimizer.state_dict())
    assert same(second["lr_schedulers"][0], alone_scheduler.state_dict())
    assert second["callbacks"] == {"VariantCheckpoints": {"best": [0.5]}, "Other": {"x": 1}}

    merged = merge_checkpoints(parts, "VariantCheckpoints")
    assert same(merged["state_dict"], state["state_dict"])
    assert same(merged["optimizer_states"], state["optimizer_states"])
    assert same(merged["lr_schedulers"], state["lr_schedulers"])
    assert merged["callbacks"] == state["callbacks"] and merged["global_step"] == 3


def test_shares_saved_at_different_steps_do_not_merge():
    together = [head(0), head(1)]
    optimizer, scheduler, owners = train(together)
    state = pass_state(together, optimizer, scheduler)
    jobs = [JobCheckpoint({}, None, None)] * 2
    parts = [split_checkpoint(state, i, owners, jobs[i]) for i in range(2)]
    parts[1]["global_step"] = 4
    try:
        merge_checkpoints(parts)
    except ValueError as err:
        assert "different steps [3, 4]" in str(err)
    else:
        raise AssertionError("merged checkpoints of different steps")
