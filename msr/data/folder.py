"""Unlabelled pictures from a folder, for prediction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from msr.data.coco import to_float_image
from msr.data.image_io import IMAGE_EXTENSIONS, load_rgb_image, read_picture_header
from msr.errors import DatasetError


def list_images(root: str | Path) -> list[Path]:
    """Return the image files under ``root`` (recursive, by extension, sorted by relative path)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


#: Side of the blank stand-in picture of an unreadable file (with `skip_unreadable`).
PLACEHOLDER_SIZE = 32


class ImageFolderDataset(Dataset):
    """All jpg/png/... pictures under a folder; one sample per picture.

    A sample is ``(image, target)`` with ``image`` a float32 ``tv_tensors.Image`` [3, H, W] in
    [0, 1] and ``target = {"image_id": int, "file_name": str, "orig_size": (H, W)}``: ``image_id``
    is the index in the sorted file list and ``file_name`` the path relative to ``root``.
    ``transforms`` (e.g. ``build_transforms(train=False, ...)``) receive ``(image, target)``.

    With ``upright`` (the default) a picture with an EXIF orientation is turned upright, as viewers show
    it, and its target also holds ``"exif_orientation"`` (2-8) and ``"turned_upright": True``; without it
    the stored pixels are used and the target holds the orientation with ``"turned_upright": False``.
    ``orig_size`` is the size of the picture as read.

    A picture that cannot be decoded raises DatasetError naming it; with ``skip_unreadable`` its sample
    is a blank stand-in whose target also holds ``"unreadable": <the reason>``, for the caller to skip.
    """

    def __init__(
        self,
        root: str | Path,
        transforms: Callable[[Any, dict], tuple[Any, dict]] | None = None,
        skip_unreadable: bool = False,
        upright: bool = True,
    ) -> None:
        self.root = Path(root)
        self.files = list_images(self.root)
        if not self.files:
            raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}")
        self.transforms = transforms
        self.skip_unreadable = bool(skip_unreadable)
        self.upright = bool(upright)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        path = self.files[index]
        target: dict[str, Any] = {"image_id": index, "file_name": path.relative_to(self.root).as_posix()}
        try:
            orientation = read_picture_header(path).orientation
            rgb = load_rgb_image(path, upright=self.upright)
            if orientation != 1:
                target["exif_orientation"] = orientation
                target["turned_upright"] = self.upright
        except DatasetError as err:
            if not self.skip_unreadable:
                raise DatasetError(f"{err} (data.skip_unreadable=true skips such pictures)") from None
            rgb = np.zeros((PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3), dtype=np.uint8)
            target["unreadable"] = str(err)
        image = tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1))
        target["orig_size"] = (int(rgb.shape[0]), int(rgb.shape[1]))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return to_float_image(image), target
