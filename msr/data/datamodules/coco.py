"""LightningDataModules over COCO instances files: any paths, and the COCO 2017 layout under one root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from msr.data.coco import BACKGROUND, CocoInstanceDataset
from msr.data.collate import collate_fn
from msr.data.datamodules.checks import (
    UnreadablePictures,
    category_names,
    check_evaluation_set,
    check_loader_options,
    check_pictures,
    check_training_set,
)
from msr.data.folder import ImageFolderDataset
from msr.data.folds import check_fold, write_fold_files
from msr.data.orientation import check_reading
from msr.data.samplers import GroupedBatchSampler, aspect_ratio_group_ids
from msr.data.synthetic import default_cache_dir
from msr.data.transforms import build_transforms
from msr.distributed import is_distributed
from msr.errors import DatasetError


def coco2017_paths(root: str | Path) -> dict[str, Path]:
    """Return the COCO 2017 paths under ``root``: ``{train,val}_images`` and ``{train,val}_ann``.

    Layout: ``root/train2017``, ``root/val2017``, ``root/annotations/instances_{train,val}2017.json``.

    Raises:
        DatasetError: naming every missing path.
    """
    root = Path(root).expanduser()
    paths = {
        "train_images": root / "train2017",
        "train_ann": root / "annotations" / "instances_train2017.json",
        "val_images": root / "val2017",
        "val_ann": root / "annotations" / "instances_val2017.json",
    }
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DatasetError(f"COCO 2017 layout incomplete under {root}; missing: {', '.join(missing)}")
    return paths


class CocoDataModule(pl.LightningDataModule):
    """Train/val/test/predict loaders over COCO instances files (pycocotools) and image folders.

    Samples are those of ``CocoInstanceDataset`` (val/test keep images without instances; train
    drops them if ``drop_empty``); batches are ``(list of images, list of targets)``. The test
    split defaults to the val split when ``test_ann`` is not given. Training batches are grouped
    by aspect ratio (``aspect_ratio_bins``, see ``aspect_ratio_group_ids``; grouping off puts all
    images in one group) and sharded per rank by ``GroupedBatchSampler``, which also accepts the
    ``DistributedSampler`` Lightning injects under DDP. Val/test loaders are sequential; when
    torch.distributed is initialised they shard with a ``DistributedSampler``, which repeats a
    few images to even out ranks, so evaluation must deduplicate by ``image_id``. The predict
    loader shards without repeats.

    The loader settings (``batch_size``, ``eval_batch_size``: None for ``batch_size``, ``num_workers``,
    ``pin_memory``, ``persistent_workers``) have no defaults here: msr/conf/data/_loader.yaml and the data
    choices hold them.

    Resizing is optional: ``min_size`` (int or list for multi-scale training) and ``max_size`` for
    training, ``eval_min_size`` (with ``max_size``) for val/test/predict; ``None`` leaves pictures at
    their size (the torchvision model resizes internally and maps predictions back).

    ``exif_orientation`` (``auto``, ``apply``, ``ignore``; see msr.data.orientation) chooses how pictures
    with an EXIF orientation are read: the annotated splits as ``CocoInstanceDataset`` says, the predict
    pictures upright unless ``ignore``.
    """

    def __init__(
        self,
        train_images: str | None = None,
        train_ann: str | None = None,
        val_images: str | None = None,
        val_ann: str | None = None,
        test_images: str | None = None,
        test_ann: str | None = None,
        predict_images: str | None = None,
        *,
        batch_size: int,
        eval_batch_size: int | None,
        num_workers: int,
        pin_memory: bool,
        persistent_workers: bool,
        min_size: int | Sequence[int] | None = None,
        max_size: int | None = None,
        eval_min_size: int | None = None,
        hflip_prob: float = 0.5,
        color_jitter: bool = False,
        aspect_ratio_grouping: bool = True,
        aspect_ratio_bins: int = 3,
        drop_empty: bool = True,
        include_crowd: bool = False,
        skip_unreadable: bool = False,
        exif_orientation: str = "auto",
        seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
        fold_seed: int = 0,
    ) -> None:
        super().__init__()
        check_fold(folds, fold)
        check_loader_options(batch_size, eval_batch_size, num_workers)
        self.exif_orientation = check_reading(exif_orientation)
        self.save_hyperparameters(logger=False)
        self.train_images, self.train_ann = train_images, train_ann
        self.val_images, self.val_ann = val_images, val_ann
        self.test_images, self.test_ann = test_images, test_ann
        self.predict_images = predict_images
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.min_size = list(min_size) if isinstance(min_size, Sequence) else min_size
        self.max_size = max_size
        self.eval_min_size = eval_min_size
        self.hflip_prob = float(hflip_prob)
        self.color_jitter = bool(color_jitter)
        self.aspect_ratio_grouping = bool(aspect_ratio_grouping)
        self.aspect_ratio_bins = int(aspect_ratio_bins)
        self.drop_empty = bool(drop_empty)
        self.include_crowd = bool(include_crowd)
        self.skip_unreadable = bool(skip_unreadable)
        self.seed = int(seed)
        self.folds = None if folds is None else int(folds)
        self.fold, self.fold_seed = int(fold), int(fold_seed)
        self._folded = False
        self.train_dataset: CocoInstanceDataset | None = None
        self.val_dataset: CocoInstanceDataset | None = None
        self.test_dataset: CocoInstanceDataset | None = None
        self.predict_dataset: ImageFolderDataset | None = None
        self._categories: list[tuple[int, str]] | None = None

    # -- paths and categories ---------------------------------------------------------------------

    def resolve_paths(self) -> None:
        """Fill in paths that are only known at run time (subclasses); the default does nothing."""

    def resolve(self) -> None:
        """Resolve the paths (`resolve_paths`) and, with `folds`, replace train and val by fold `fold` of
        their pooled pictures (msr.data.folds; the fold files are cached under $MSR_CACHE_DIR/folds)."""
        self.resolve_paths()
        if self.folds is None or self._folded:
            return
        if None in (self.train_ann, self.val_ann, self.train_images, self.val_images):
            raise DatasetError("data.folds needs both splits (train and val annotations and pictures)")
        splits = [(str(self.train_ann), str(self.train_images)), (str(self.val_ann), str(self.val_images))]
        cache = default_cache_dir() / "folds"
        train, val = write_fold_files(splits, self.folds, self.fold, self.fold_seed, cache)
        self.train_ann, self.val_ann = str(train), str(val)
        self._folded = True

    def _annotation_files(self) -> list[Path]:
        """Return the configured annotation files, smallest split (val) first."""
        files = [self.val_ann, self.test_ann, self.train_ann]
        return [Path(f) for f in files if f is not None]

    def categories(self) -> list[tuple[int, str]]:
        """Return the ``(category id, name)`` pairs, sorted by id (label ``i + 1`` is entry ``i``)."""
        if self._categories is None:
            for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
                if dataset is not None:
                    self._categories = [
                        (cid, dataset.class_names[label])
                        for label, cid in sorted(dataset.label_to_cat_id.items())
                    ]
                    break
            else:
                self.resolve()
                files = self._annotation_files()
                if not files:
                    raise DatasetError("no annotation file configured: set train_ann, val_ann or test_ann")
                self._categories = category_names(files[0], evaluated=str(files[0]) != str(self.train_ann))
        return self._categories

    @property
    def class_names(self) -> list[str]:
        """Return the class names indexed by label: ``[BACKGROUND, name of label 1, ...]``."""
        return [BACKGROUND] + [name for _cid, name in self.categories()]

    @property
    def num_classes(self) -> int:
        """Return K + 1: the number of categories plus background."""
        return len(self.categories()) + 1

    @property
    def label_to_cat_id(self) -> dict[int, int]:
        """Return the map from contiguous label (1..K) to the original COCO category id."""
        return {i + 1: cid for i, (cid, _name) in enumerate(self.categories())}

    # -- datasets ---------------------------------------------------------------------------------

    def _dataset(self, images: str | None, ann: str | None, split: str, train: bool) -> UnreadablePictures:
        """Return the data set of one split, with its transforms, checked (`checks.check_training_set`,
        `checks.check_evaluation_set`) and wrapped to name or skip pictures that fail to load."""
        if images is None or ann is None:
            raise DatasetError(f"the {split} split needs both {split}_images and {split}_ann")
        if not train:  # COCOeval and the calibration will read it: checked now, not at the first validation
            category_names(ann, evaluated=True)
        transforms = build_transforms(
            train=train,
            min_size=self.min_size if train else self.eval_min_size,
            max_size=self.max_size,
            hflip_prob=self.hflip_prob,
            color_jitter=self.color_jitter,
        )
        dataset = CocoInstanceDataset(
            images,
            ann,
            transforms,
            drop_empty=self.drop_empty and train,
            include_crowd=self.include_crowd,
            skip_unreadable=self.skip_unreadable,
            exif_orientation=self.exif_orientation,
        )
        self._check_categories(dataset)
        if train:
            check_training_set(dataset)
            check_pictures(dataset, check_sizes=not self.skip_unreadable)
        else:
            check_evaluation_set(dataset, check_sizes=not self.skip_unreadable)
        return UnreadablePictures(dataset, skip=self.skip_unreadable)

    def _check_categories(self, dataset: CocoInstanceDataset) -> None:
        """Raise if ``dataset``'s categories differ from the ones already seen (labels would clash)."""
        found = [(cid, dataset.class_names[label]) for label, cid in sorted(dataset.label_to_cat_id.items())]
        if self._categories is not None and found != self._categories:
            raise DatasetError(
                f"{dataset.ann_file}: categories differ from the other splits' ({self._categories})"
            )
        self._categories = found

    def setup(self, stage: str | None = None) -> None:
        """Build the data sets needed for ``stage`` (fit, validate, test, predict; None: all configured)."""
        self.resolve()
        if stage in ("fit", None) and self.train_dataset is None and self.train_ann is not None:
            self.train_dataset = self._dataset(self.train_images, self.train_ann, "train", train=True)
        if stage in ("fit", "validate", None) and self.val_dataset is None and self.val_ann is not None:
            self.val_dataset = self._dataset(self.val_images, self.val_ann, "val", train=False)
        if stage in ("test", None) and self.test_dataset is None:
            if self.test_ann is not None:
                self.test_dataset = self._dataset(self.test_images, self.test_ann, "test", train=False)
            elif self.val_ann is not None:
                same = self.val_dataset
                self.test_dataset = (
                    same
                    if same is not None
                    else self._dataset(self.val_images, self.val_ann, "val", train=False)
                )
        if stage in ("predict", None) and self.predict_dataset is None and self.predict_images is not None:
            transforms = build_transforms(
                train=False, min_size=self.eval_min_size, max_size=self.max_size, targets=False
            )
            upright = self.exif_orientation != "ignore"
            self.predict_dataset = ImageFolderDataset(
                self.predict_images, transforms, self.skip_unreadable, upright=upright
            )

    # -- loaders ----------------------------------------------------------------------------------

    def _loader_options(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
            "collate_fn": collate_fn,
        }

    def _require(self, dataset: Dataset | None, split: str) -> Dataset:
        if dataset is None:
            raise DatasetError(f"no {split} data set: configure its paths and call setup() first")
        return dataset

    def train_batch_sampler(self) -> GroupedBatchSampler:
        """Return the aspect-ratio grouped, rank-sharded batch sampler of the training set."""
        dataset = self._require(self.train_dataset, "train")
        if self.aspect_ratio_grouping:
            group_ids = aspect_ratio_group_ids(dataset.aspect_ratios(), self.aspect_ratio_bins)
        else:
            group_ids = [0] * len(dataset)
        return GroupedBatchSampler(group_ids, self.batch_size, shuffle=True, seed=self.seed)

    def train_dataloader(self) -> DataLoader:
        """Return the training loader (shuffled, aspect-ratio grouped, sharded per rank)."""
        dataset = self._require(self.train_dataset, "train")
        return DataLoader(dataset, batch_sampler=self.train_batch_sampler(), **self._loader_options())

    def _eval_loader(self, dataset: Dataset | None, split: str, unrepeated: bool = False) -> DataLoader:
        """Return a sequential loader, sharded over ranks when torch.distributed is initialised.

        The sharding is explicit so it does not depend on the Trainer's ``use_distributed_sampler``:
        a ``DistributedSampler`` (val/test: pads by repeating a few images so every rank runs the
        same number of steps) or an unrepeated one (predict: every picture exactly once).
        """
        dataset = self._require(dataset, split)
        sampler = None
        if is_distributed():
            sampler_cls = UnrepeatedDistributedSampler if unrepeated else DistributedSampler
            sampler = sampler_cls(dataset, shuffle=False)
        return DataLoader(
            dataset, batch_size=self.eval_batch_size, shuffle=False, sampler=sampler, **self._loader_options()
        )

    def val_dataloader(self) -> DataLoader:
        """Return the validation loader (sequential, all images)."""
        return self._eval_loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        """Return the test loader (sequential, all images; the val set if no test set is configured)."""
        return self._eval_loader(self.test_dataset, "test")

    def predict_dataloader(self) -> DataLoader:
        """Return the loader over ``predict_images`` (samples carry ``image_id`` and ``file_name``)."""
        return self._eval_loader(self.predict_dataset, "predict", unrepeated=True)


class Coco2017DataModule(CocoDataModule):
    """``CocoDataModule`` over the standard COCO 2017 layout under ``root`` (see ``coco2017_paths``)."""

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root

    def resolve_paths(self) -> None:
        """Set the train/val paths from ``root``; raise naming any missing path."""
        if self.train_ann is None:
            paths = coco2017_paths(self.root)
            self.train_images, self.train_ann = str(paths["train_images"]), str(paths["train_ann"])
            self.val_images, self.val_ann = str(paths["val_images"]), str(paths["val_ann"])
