"""DataModules: batches from a tiny synthetic set, predict folders, layouts, Hydra and Lightning."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from support.loaders import LOADER
from torchvision import tv_tensors

from msr.data.datamodules import Coco2017DataModule, CocoDataModule, SyntheticDataModule, coco2017_paths
from msr.data.samplers import GroupedBatchSampler
from msr.data.synthetic import CATEGORY_NAMES
from msr.errors import DatasetError

TINY = {"num_train": 10, "num_val": 5, "image_size": 64}


@pytest.fixture
def synthetic_dm(tmp_path: Path) -> SyntheticDataModule:
    dm = SyntheticDataModule(
        **TINY, **{**LOADER, "batch_size": 4, "eval_batch_size": 2}, cache_dir=str(tmp_path / "cache")
    )
    dm.prepare_data()
    return dm


def test_train_and_val_batches(synthetic_dm: SyntheticDataModule) -> None:
    assert synthetic_dm.num_classes == len(CATEGORY_NAMES) + 1  # known before setup, nothing read
    assert synthetic_dm.class_names == ["__background__", *CATEGORY_NAMES]
    synthetic_dm.setup("fit")
    train = synthetic_dm.train_dataloader()
    assert isinstance(train.batch_sampler, GroupedBatchSampler)
    seen = []
    for images, targets in train:
        assert isinstance(images, list) and isinstance(targets, list) and 1 <= len(images) <= 4
        for image, target in zip(images, targets):
            assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32
            n = len(target["labels"])
            assert n > 0  # training drops pictures without instances
            assert target["boxes"].shape == (n, 4) and target["masks"].shape == (n, *image.shape[1:])
            assert int(target["labels"].min()) >= 1 and int(target["labels"].max()) <= len(CATEGORY_NAMES)
            seen.append(target["image_id"])
    assert sorted(seen) == sorted(synthetic_dm.train_dataset.ids)

    val_ids = [t["image_id"] for _, targets in synthetic_dm.val_dataloader() for t in targets]
    assert val_ids == [1, 2, 3, 4, 5]  # sequential, all pictures, original COCO ids
    assert synthetic_dm.val_dataset.coco.getImgIds() == val_ids  # GT for the evaluator
    assert synthetic_dm.val_dataset.ann_file.name == "instances_val.json"


def test_multiscale_resize_and_workers(tmp_path: Path) -> None:
    dm = SyntheticDataModule(
        **TINY,
        **{**LOADER, "num_workers": 1},
        cache_dir=str(tmp_path / "cache"),
        min_size=[32, 48],
        max_size=80,
    )
    dm.setup("fit")
    sizes = {tuple(image.shape[1:]) for images, _ in dm.train_dataloader() for image in images}
    assert sizes <= {(32, 32), (48, 48)}
    images, targets = next(iter(dm.val_dataloader()))
    assert images[0].shape[1:] == (64, 64)  # no eval resize by default
    assert targets[0]["orig_size"] == (64, 64)


def test_test_split_defaults_to_val_and_predict_folder(synthetic_dm: SyntheticDataModule) -> None:
    synthetic_dm.setup("test")
    assert synthetic_dm.test_dataset.ann_file == Path(synthetic_dm.val_ann)
    synthetic_dm.predict_images = synthetic_dm.val_images
    synthetic_dm.setup("predict")
    batches = list(synthetic_dm.predict_dataloader())
    targets = [t for _, ts in batches for t in ts]
    assert [t["file_name"] for t in targets] == [f"{i:06d}.png" for i in range(1, 6)]
    assert [t["image_id"] for t in targets] == list(range(5))
    assert batches[0][0][0].shape == (3, 64, 64)


def test_coco2017_layout_names_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "train2017").mkdir()
    with pytest.raises(DatasetError, match=r"instances_val2017\.json") as info:
        coco2017_paths(tmp_path)
    assert "val2017" in str(info.value) and "instances_train2017.json" in str(info.value)
    with pytest.raises(DatasetError, match=r"val2017"):
        Coco2017DataModule(root=str(tmp_path), **LOADER).setup("fit")


def test_plain_paths_and_category_checks(tiny_synthetic, tmp_path: Path) -> None:
    dm = CocoDataModule(
        train_images=str(tiny_synthetic.train_images),
        train_ann=str(tiny_synthetic.train_ann),
        val_images=str(tiny_synthetic.val_images),
        val_ann=str(tiny_synthetic.val_ann),
        **{**LOADER, "batch_size": 3},
        aspect_ratio_grouping=False,
    )
    assert dm.num_classes == 7 and dm.label_to_cat_id == {i: i for i in range(1, 7)}  # read from val JSON
    dm.setup()
    assert len(dm.train_dataloader()) == -(-len(dm.train_dataset) // 3)

    other = json.loads(tiny_synthetic.val_ann.read_text())
    other["categories"][0]["name"] = "donut"
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(other))
    mismatched = CocoDataModule(
        train_images=str(tiny_synthetic.train_images),
        train_ann=str(tiny_synthetic.train_ann),
        val_images=str(tiny_synthetic.val_images),
        val_ann=str(renamed),
        **LOADER,
    )
    with pytest.raises(DatasetError, match=r"renamed\.json.*categories differ"):
        mismatched.setup("fit")


def test_hydra_instantiates_from_plain_config(tmp_path: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "_target_": "msr.data.datamodules.SyntheticDataModule",
            **TINY,
            "data_seed": 1,
            "cache_dir": str(tmp_path / "cache"),
            **LOADER,
            "min_size": [48, 64],
        }
    )
    dm = instantiate(cfg)
    assert isinstance(dm, SyntheticDataModule) and dm.min_size == [48, 64]
    dm.setup("validate")
    assert len(dm.val_dataset) == 5


class _RecordingModule(pl.LightningModule):
    """Records what the Trainer feeds it; no model."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.epochs_seen: list[int] = []
        self.val_ids: list[int] = []

    def training_step(self, batch, batch_idx):
        images, _targets = batch
        sampler = self.trainer.train_dataloader.batch_sampler
        self.epochs_seen.append(int(sampler.sampler.epoch))
        return (self.weight * len(images)).sum()

    def validation_step(self, batch, batch_idx):
        self.val_ids.extend(t["image_id"] for t in batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trainer_drives_the_datamodule(synthetic_dm: SyntheticDataModule) -> None:
    module = _RecordingModule()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=synthetic_dm)
    assert sorted(set(module.epochs_seen)) == [0, 1]  # Lightning's set_epoch reaches the sampler
    assert module.val_ids == [1, 2, 3, 4, 5] * 2  # every val picture once per epoch, in order
