"""Aspect-ratio grouped batches: coverage, grouping, rank sharding, epochs, Lightning injection."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader
from torch.utils.data.distributed import DistributedSampler

from msr.data.samplers import GroupedBatchSampler, aspect_ratio_group_ids

GROUPS = [0, 1, 1, 2, 0, 1, 2, 2, 0, 0, 1, 1, 2, 0, 1, 1, 0, 2, 2, 1, 0, 0, 1]  # 23 images, 3 groups


def test_group_ids_bucket_aspect_ratios() -> None:
    ratios = [0.3, 0.5, 0.8, 1.0, 1.33, 1.5, 2.0, 4.0]
    ids = aspect_ratio_group_ids(ratios, bins_per_side=3)
    assert ids == sorted(ids)  # monotonic in the ratio
    assert ids[0] == 0 and ids[-1] == 7 and ids[3] == 4  # beyond 1:2 and 2:1 fall in the outer buckets
    assert aspect_ratio_group_ids(ratios, bins_per_side=0) == [0, 0, 0, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_every_index_once_and_one_group_per_batch(batch_size: int) -> None:
    sampler = GroupedBatchSampler(GROUPS, batch_size, shuffle=True, seed=0, num_replicas=1, rank=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(GROUPS)))
    assert all(len({GROUPS[i] for i in b}) == 1 for b in batches)
    assert all(1 <= len(b) <= batch_size for b in batches)
    # at most one partial batch per group
    assert sum(len(b) < batch_size for b in batches) <= len(set(GROUPS))


def test_drop_last_keeps_full_batches_only() -> None:
    sampler = GroupedBatchSampler(GROUPS, 4, drop_last=True, num_replicas=1, rank=0)
    batches = list(sampler)
    counts = Counter(GROUPS)
    assert len(batches) == len(sampler) == sum(c // 4 for c in counts.values())
    assert all(len(b) == 4 for b in batches)


@pytest.mark.parametrize("batch_size", [2, 3])
def test_two_ranks_shard_disjointly_and_cover_everything(batch_size: int) -> None:
    shards = [
        list(GroupedBatchSampler(GROUPS, batch_size, seed=5, num_replicas=2, rank=rank)) for rank in (0, 1)
    ]
    single = GroupedBatchSampler(GROUPS, batch_size, seed=5, num_replicas=1, rank=0)
    assert (
        len(shards[0])
        == len(shards[1])
        == len(GroupedBatchSampler(GROUPS, batch_size, num_replicas=2, rank=0))
    )
    seen = Counter(i for shard in shards for b in shard for i in b)
    assert set(seen) == set(range(len(GROUPS)))  # every index on some rank
    # the ranks split one global batch list: rank r takes batches r, r + 2, ...; an odd number of
    # batches is evened out by repeating the first batch, the only duplicates
    global_batches = single.global_batches()
    padded = global_batches + global_batches[: len(global_batches) % 2]
    assert shards[0] == padded[0::2] and shards[1] == padded[1::2]
    assert sum(c - 1 for c in seen.values()) == sum(len(b) for b in padded[len(global_batches) :])
    assert all(len({GROUPS[i] for i in b}) == 1 for shard in shards for b in shard)


def test_set_epoch_reshuffles_identically_on_all_ranks() -> None:
    ranks = [GroupedBatchSampler(GROUPS, 2, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    epoch0 = [list(s) for s in ranks]
    for s in ranks:
        s.set_epoch(1)
    epoch1 = [list(s) for s in ranks]
    assert epoch0 != epoch1
    for shards in (epoch0, epoch1):  # still a disjoint cover (modulo padding) after the reshuffle
        assert {i for shard in shards for b in shard for i in b} == set(range(len(GROUPS)))
    for s in ranks:
        s.set_epoch(0)
    assert [list(s) for s in ranks] == epoch0  # a pure function of seed and epoch


def test_no_shuffle_keeps_order() -> None:
    batches = list(GroupedBatchSampler([0] * 7, 3, shuffle=False, num_replicas=1, rank=0))
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]


def test_works_as_dataloader_batch_sampler() -> None:
    sampler = GroupedBatchSampler(GROUPS, 4, num_replicas=1, rank=0)
    loader = DataLoader(list(range(len(GROUPS))), batch_sampler=sampler)
    assert sorted(int(i) for batch in loader for i in batch) == list(range(len(GROUPS)))


def test_lightning_can_inject_its_distributed_sampler() -> None:
    """Lightning (use_distributed_sampler=True under DDP) rebuilds custom batch samplers from their
    saved init arguments with ``sampler=<its DistributedSampler>``; the rebuilt one must shard."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    dataset = list(range(len(GROUPS)))
    with _replace_dunder_methods(BatchSampler):  # what Lightning does around train_dataloader()
        loader = DataLoader(dataset, batch_sampler=GroupedBatchSampler(GROUPS, 2, num_replicas=1, rank=0))
    injected = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=9)
    rebuilt = _update_dataloader(loader, injected, mode=RunningStage.TRAINING)
    batch_sampler = rebuilt.batch_sampler
    assert isinstance(batch_sampler, GroupedBatchSampler)
    assert batch_sampler.sampler is injected and batch_sampler.num_replicas == 2 and batch_sampler.rank == 1
    expected = list(GroupedBatchSampler(GROUPS, 2, seed=9, num_replicas=2, rank=1))
    assert [b.tolist() for b in rebuilt] == expected
    injected.set_epoch(3)  # Lightning calls set_epoch on batch_sampler.sampler
    other = GroupedBatchSampler(GROUPS, 2, seed=9, num_replicas=2, rank=1)
    other.set_epoch(3)
    assert list(batch_sampler) == list(other)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        GroupedBatchSampler(GROUPS, 0)
    with pytest.raises(ValueError, match="group ids"):
        GroupedBatchSampler(GROUPS, 2, sampler=DistributedSampler(range(5), num_replicas=1, rank=0))
    with pytest.raises(TypeError, match="DistributedSampler"):
        GroupedBatchSampler(GROUPS, 2, sampler=torch.utils.data.SequentialSampler(GROUPS))
