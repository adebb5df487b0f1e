"""Two real CPU processes (gloo): the DataModule's loaders shard by rank without help from Lightning."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from support.loaders import LOADER

from msr.data.datamodules import SyntheticDataModule


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, root: str, out: str) -> None:
    torch.set_num_threads(1)  # forked from a process whose thread pools may be running
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        dm = SyntheticDataModule(
            num_train=20, num_val=5, image_size=32, cache_dir=root, **{**LOADER, "batch_size": 3}
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        epochs = []
        for epoch in range(2):
            loader.batch_sampler.set_epoch(epoch)
            epochs.append([[t["image_id"] for t in targets] for _, targets in loader])
        val = [t["image_id"] for _, targets in dm.val_dataloader() for t in targets]
        record = {"epochs": epochs, "val": val, "train_ids": dm.train_dataset.ids}
        Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_get_disjoint_equal_shards(tmp_path: Path) -> None:
    # generate once up front, as prepare_data would on rank 0
    SyntheticDataModule(
        num_train=20, num_val=5, image_size=32, cache_dir=str(tmp_path), **LOADER
    ).prepare_data()
    # fork (not spawn): the children reuse the imported modules, seconds instead of tens of seconds
    mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path), str(tmp_path)), nprocs=2, start_method="fork"
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for epoch in range(2):
        shards = [ranks[r]["epochs"][epoch] for r in (0, 1)]
        assert len(shards[0]) == len(shards[1])  # same number of steps: no DDP hang
        ids = [i for shard in shards for batch in shard for i in batch]
        assert set(ids) == set(ranks[0]["train_ids"])  # every training picture
        assert len(ids) - len(set(ids)) <= 3  # only the padding batch repeats
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # set_epoch reshuffles
    assert sorted(ranks[0]["val"] + ranks[1]["val"]) == [1, 1, 2, 3, 4, 5]  # one padded repeat
    assert not set(ranks[0]["val"]) & set(ranks[1]["val"]) - {1}
