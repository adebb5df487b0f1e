"""The one rank helper of msr, and pickled-object collectives for gathering results to rank 0.

Object collectives run on the default group when it is gloo, and on a gloo group made once for the
purpose otherwise (NCCL would copy every pickled result list through GPU memory). Every collective
is a no-op when torch.distributed is not initialised or has a single rank.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

#: Environment variables that launchers set to the process rank, in the order they are trusted
#: (the rule of Lightning's `rank_zero_only`).
RANK_ENV = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

_gloo_group: tuple[Any, Any] | None = None  # (default group it was made for, gloo group)


def _dist() -> Any:
    """Return torch.distributed, imported on first use (scoring a results file needs no torch)."""
    import torch.distributed

    return torch.distributed


def is_initialized() -> bool:
    """Return True when torch.distributed is available and its default process group exists.

    Without torch loaded no process group can exist: False, and torch is not imported for the answer.
    """
    if "torch" not in sys.modules:
        return False
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Return True when torch.distributed is initialised with more than one rank."""
    return is_initialized() and _dist().get_world_size() > 1


def get_rank() -> int:
    """Return this process's global rank: torch.distributed's when initialised, else the launcher's.

    Before (or without) a process group, the rank comes from the first of RANK, LOCAL_RANK,
    SLURM_PROCID, JSM_NAMESPACE_RANK that is set, else 0.
    """
    if is_initialized():
        return _dist().get_rank()
    for key in RANK_ENV:
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return 0


def launched_externally() -> bool:
    """Return True when this process was started by torchrun, SLURM srun or a Lightning launcher."""
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ


def get_world_size() -> int:
    """Return the number of ranks of the default process group (1 when not initialised)."""
    return _dist().get_world_size() if is_initialized() else 1


def object_group() -> Any:
    """Return the process group for pickled-object collectives: None (the default) if gloo, else gloo.

    Collective: the first call on a non-gloo default group must happen on every rank.
    """
    global _gloo_group
    if _dist().get_backend() == "gloo":
        return None
    world = _dist().group.WORLD
    if _gloo_group is None or _gloo_group[0] is not world:
        _gloo_group = (world, _dist().new_group(backend="gloo"))
    return _gloo_group[1]


def dedupe_by_image(
    per_rank: Iterable[tuple[list[dict[str, Any]], Iterable[int]]],
) -> tuple[list[dict[str, Any]], list[int]]:
    """Return (results, sorted image ids) keeping, for every image, only the first rank's results for it.

    Results come out sorted by image id (stable within an image), so that the order, and with it every
    floating-point sum over results, does not depend on how images were spread over ranks.

    `per_rank`: (results, image ids evaluated) of each rank in rank order. An image that several ranks
    evaluated (DistributedSampler pads by repeating images) keeps the results of the lowest such rank.
    A rank's images are its listed ids plus the image ids of its results.
    """
    kept: dict[int, list[dict[str, Any]]] = {}
    for results, image_ids in per_rank:
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for res in results:
            by_image[int(res["image_id"])].append(res)
        for image_id in {int(i) for i in image_ids} | set(by_image):
            kept.setdefault(image_id, by_image.get(image_id, []))
    ids = sorted(kept)
    return [res for i in ids for res in kept[i]], ids


def gather_results(
    results: list[dict[str, Any]], image_ids: Iterable[int], dst: int = 0
) -> tuple[list[dict[str, Any]], list[int]]:
    """Return, on rank `dst`, all ranks' results and image ids without padded duplicates; ([], []) elsewhere.

    Collective: every rank must call it. Not distributed: this rank's results, deduplicated.
    """
    image_ids = [int(i) for i in image_ids]
    if not is_distributed():
        return dedupe_by_image([(results, image_ids)])
    group = object_group()
    rank = _dist().get_rank()
    gathered: list[Any] | None = [None] * _dist().get_world_size() if rank == dst else None
    _dist().gather_object((results, image_ids), gathered, dst=dst, group=group)
    if rank != dst:
        return [], []
    return dedupe_by_image(gathered)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Return rank `src`'s `obj` on every rank (collective); `obj` itself when not distributed."""
    if not is_distributed():
        return obj
    box = [obj if _dist().get_rank() == src else None]
    _dist().broadcast_object_list(box, src=src, group=object_group())
    return box[0]


def wait_for_children(trainer: Any, timeout: float = 300.0) -> None:
    """Wait for the DDP processes this process launched through a Lightning `trainer` (if any) to exit."""
    launcher = getattr(trainer.strategy, "launcher", None)
    for proc in getattr(launcher, "procs", None) or []:
        proc.wait(timeout=timeout)
