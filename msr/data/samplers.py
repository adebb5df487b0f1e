"""Aspect-ratio grouped batch sampling that shards batches across distributed ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler
from torch.utils.data.distributed import DistributedSampler

from msr.distributed import get_rank, get_world_size, is_initialized


def aspect_ratio_group_ids(aspect_ratios: Sequence[float], bins_per_side: int = 3) -> list[int]:
    """Return one group id per image from its width / height ratio.

    ``log2(w / h)`` is bucketed by ``2 * bins_per_side + 1`` evenly spaced edges over [-1, 1]
    (ratios 1:2 .. 2:1); ratios beyond fall in the two outer buckets. ``bins_per_side=0`` gives
    two groups: portrait (w < h) and landscape or square (w >= h).
    """
    ratios = np.asarray(aspect_ratios, dtype=np.float64)
    if ratios.size and (not np.all(np.isfinite(ratios)) or ratios.min() <= 0):
        raise ValueError("aspect ratios must be finite and positive")
    if bins_per_side <= 0:
        return (ratios >= 1.0).astype(int).tolist()
    edges = np.linspace(-1.0, 1.0, 2 * bins_per_side + 1)
    return np.digitize(np.log2(ratios), edges).tolist()


def _default_layout(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Return ``(num_replicas, rank)``: the given values, else torch.distributed's, else (1, 0)."""
    if num_replicas is None:
        num_replicas = get_world_size()
    if rank is None:
        rank = get_rank() if is_initialized() else 0
    return num_replicas, rank


class GroupedBatchSampler(BatchSampler):
    """Batches whose images all share one aspect-ratio group, sharded across ranks.

    Per epoch: all dataset indices are shuffled with ``seed + epoch`` (the same order on every
    rank), streamed into one buffer per group, and a batch is emitted whenever a buffer holds
    ``batch_size`` indices; leftover partial batches follow at the end (dropped if ``drop_last``).
    With one replica every index appears exactly once per epoch. With ``R`` replicas the batch
    list is padded to a multiple of ``R`` by repeating its first batches and rank ``r`` takes
    batches ``r, r + R, ...``: every rank gets the same number of batches (no DDP hang) and every
    index is seen at least once.

    Layout and epoch live in ``sampler``, a ``DistributedSampler`` over the data set (built from
    ``shuffle``, ``seed``, ``num_replicas``, ``rank`` when not given; ``num_replicas``/``rank``
    default to torch.distributed's when it is initialised). Lightning, when it injects a
    distributed sampler under DDP, passes its own ``DistributedSampler`` here and calls its
    ``set_epoch``; outside Lightning call ``set_epoch`` on this object each epoch. Only the
    sampler's layout, shuffle flag, seed and epoch are used, not its own index order.
    """

    def __init__(
        self,
        group_ids: Sequence[int],
        batch_size: int,
        drop_last: bool = False,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        sampler: DistributedSampler | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.group_ids = [int(g) for g in group_ids]
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        if sampler is None:
            num_replicas, rank = _default_layout(num_replicas, rank)
            sampler = DistributedSampler(
                range(len(self.group_ids)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed
            )
        if not isinstance(sampler, DistributedSampler):
            raise TypeError(
                "GroupedBatchSampler takes a DistributedSampler (layout and epoch), "
                f"got {type(sampler).__name__}"
            )
        if len(sampler.dataset) != len(self.group_ids):
            raise ValueError(
                f"sampler covers {len(sampler.dataset)} samples "
                f"but {len(self.group_ids)} group ids were given"
            )
        self.sampler = sampler

    @property
    def num_replicas(self) -> int:
        """Return the number of ranks the batches are sharded over."""
        return int(self.sampler.num_replicas)

    @property
    def rank(self) -> int:
        """Return this rank's index."""
        return int(self.sampler.rank)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next shuffle (identical on every rank)."""
        self.sampler.set_epoch(epoch)

    def _order(self) -> list[int]:
        """Return this epoch's global index order."""
        n = len(self.group_ids)
        if not self.sampler.shuffle:
            return list(range(n))
        generator = torch.Generator()
        generator.manual_seed(int(self.sampler.seed) + int(self.sampler.epoch))
        return torch.randperm(n, generator=generator).tolist()

    def global_batches(self) -> list[list[int]]:
        """Return this epoch's batches for all ranks together, before padding and sharding."""
        buffers: dict[int, list[int]] = {}
        batches: list[list[int]] = []
        for index in self._order():
            buffer = buffers.setdefault(self.group_ids[index], [])
            buffer.append(index)
            if len(buffer) == self.batch_size:
                batches.append(buffer.copy())
                buffer.clear()
        if not self.drop_last:
            batches.extend(buffer for buffer in buffers.values() if buffer)
        return batches

    def _num_global_batches(self) -> int:
        """Return the number of batches of one epoch over all ranks (independent of the order)."""
        counts = np.bincount(np.asarray(self.group_ids, dtype=np.int64) - min(self.group_ids, default=0))
        rounding = math.floor if self.drop_last else math.ceil
        return int(sum(rounding(c / self.batch_size) for c in counts))

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        total = len(self) * self.num_replicas
        if batches and total > len(batches):
            batches = (batches * math.ceil(total / len(batches)))[:total]
        yield from batches[self.rank : total : self.num_replicas]

    def __len__(self) -> int:
        return math.ceil(self._num_global_batches() / self.num_replicas)
