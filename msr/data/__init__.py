"""msr data: COCO data sets (pycocotools), the embedded synthetic set, transforms, samplers,
LightningDataModules and converters to COCO.

Names are imported lazily (PEP 562), so ``msr-convert`` and other light users do not pay for
importing torch and Lightning; ``from msr.data import CocoDataModule`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DatasetError": "msr.data.errors",
    "load_rgb_image": "msr.data.image_io",
    "read_image_size": "msr.data.image_io",
    "IMAGE_EXTENSIONS": "msr.data.image_io",
    "segmentation_to_rle": "msr.data.segmentation",
    "decode_masks": "msr.data.segmentation",
    "mask_to_rle": "msr.data.segmentation",
    "load_coco": "msr.data.coco_json",
    "read_json": "msr.data.coco_json",
    "BACKGROUND": "msr.data.coco",
    "CocoInstanceDataset": "msr.data.coco",
    "ImageFolderDataset": "msr.data.folder",
    "collate_fn": "msr.data.collate",
    "build_transforms": "msr.data.transforms",
    "GroupedBatchSampler": "msr.data.samplers",
    "aspect_ratio_group_ids": "msr.data.samplers",
    "CATEGORY_NAMES": "msr.data.synthetic",
    "GENERATOR_VERSION": "msr.data.synthetic",
    "SyntheticCoco": "msr.data.synthetic",
    "default_cache_dir": "msr.data.synthetic",
    "generate_synthetic_coco": "msr.data.synthetic",
    "synthetic_params": "msr.data.synthetic",
    "write_synthetic_coco": "msr.data.synthetic",
    "CocoDataModule": "msr.data.datamodule",
    "Coco2017DataModule": "msr.data.datamodule",
    "SyntheticDataModule": "msr.data.datamodule",
    "ViaDataModule": "msr.data.datamodule",
    "coco2017_paths": "msr.data.datamodule",
    "masks_to_coco": "msr.data.convert",
    "via_to_coco": "msr.data.convert",
}

__all__ = [
    "BACKGROUND",
    "CATEGORY_NAMES",
    "GENERATOR_VERSION",
    "IMAGE_EXTENSIONS",
    "Coco2017DataModule",
    "CocoDataModule",
    "CocoInstanceDataset",
    "DatasetError",
    "GroupedBatchSampler",
    "ImageFolderDataset",
    "SyntheticCoco",
    "SyntheticDataModule",
    "ViaDataModule",
    "aspect_ratio_group_ids",
    "build_transforms",
    "coco2017_paths",
    "collate_fn",
    "decode_masks",
    "default_cache_dir",
    "generate_synthetic_coco",
    "load_coco",
    "load_rgb_image",
    "mask_to_rle",
    "masks_to_coco",
    "read_image_size",
    "read_json",
    "segmentation_to_rle",
    "synthetic_params",
    "via_to_coco",
    "write_synthetic_coco",
]

if TYPE_CHECKING:
    from msr.data.coco import BACKGROUND, CocoInstanceDataset
    from msr.data.coco_json import load_coco, read_json
    from msr.data.collate import collate_fn
    from msr.data.convert import masks_to_coco, via_to_coco
    from msr.data.datamodule import (
        Coco2017DataModule,
        CocoDataModule,
        SyntheticDataModule,
        ViaDataModule,
        coco2017_paths,
    )
    from msr.data.errors import DatasetError
    from msr.data.folder import ImageFolderDataset
    from msr.data.image_io import IMAGE_EXTENSIONS, load_rgb_image, read_image_size
    from msr.data.samplers import GroupedBatchSampler, aspect_ratio_group_ids
    from msr.data.segmentation import decode_masks, mask_to_rle, segmentation_to_rle
    from msr.data.synthetic import (
        CATEGORY_NAMES,
        GENERATOR_VERSION,
        SyntheticCoco,
        default_cache_dir,
        generate_synthetic_coco,
        synthetic_params,
        write_synthetic_coco,
    )
    from msr.data.transforms import build_transforms


def __getattr__(name: str) -> Any:
    """Return the public object ``name``, importing its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'msr.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
