"""LightningDataModules of msr, one family per module; the Hydra `_target_`s name them from here."""

from msr.data.datamodules.coco import Coco2017DataModule, CocoDataModule, coco2017_paths
from msr.data.datamodules.synthetic import SyntheticDataModule
from msr.data.datamodules.via import ViaDataModule

__all__ = ["Coco2017DataModule", "CocoDataModule", "SyntheticDataModule", "ViaDataModule", "coco2017_paths"]
