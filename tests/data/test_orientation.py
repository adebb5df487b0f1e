"""Phone photos: pictures stored with every EXIF orientation (1-8) and regions drawn on the upright view, as
annotation tools show them. msr-convert writes the upright sizes and regions, the data sets read such files
upright, a COCO file of stored sizes reads as stored, and the wrong reading of a quarter turn is one error
naming data.exif_orientation (msr.data.orientation)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from support.loaders import LOADER

from msr.cli.convert import main
from msr.data.coco import CocoInstanceDataset
from msr.data.datamodules import CocoDataModule
from msr.data.image_io import STORED, load_rgb_image, read_image_size, read_picture_header
from msr.errors import ConfigError, DatasetError

HEIGHT, WIDTH = 24, 40  # of the upright picture
#: The region drawn on the upright picture: a bright rectangle (VIA pixel indices x, y, width, height).
RECT = (4, 6, 12, 8)
ORIENTATIONS = range(1, 9)


def upright_picture(seed: int) -> np.ndarray:
    """Return an upright [HEIGHT, WIDTH, 3] picture: dark noise with a bright rectangle at RECT."""
    pixels = np.random.default_rng(seed).integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    x, y, w, h = RECT
    pixels[y : y + h + 1, x : x + w + 1] = 250
    return pixels


def save_tagged(path: Path, upright: np.ndarray, orientation: int, **options) -> Path:
    """Save the pixels that `orientation` turns into `upright` (as a camera stores them) with that tag."""
    picture = Image.fromarray(upright)
    stored = picture if orientation == 1 else picture.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, exif=exif.tobytes(), **options)
    return path


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize(("suffix", "options"), [(".png", {}), (".jpg", {"quality": 95}), (".tif", {})])
def test_pictures_read_upright_or_as_stored(tmp_path: Path, orientation: int, suffix: str, options) -> None:
    upright = upright_picture(orientation)
    path = save_tagged(tmp_path / f"p{suffix}", upright, orientation, **options)
    turned = orientation >= 5
    stored_size = (WIDTH, HEIGHT) if turned else (HEIGHT, WIDTH)
    header = read_picture_header(path)
    assert (header.height, header.width, header.orientation) == (*stored_size, orientation)
    assert read_image_size(path) == stored_size and read_image_size(path, upright=True) == (HEIGHT, WIDTH)
    read = load_rgb_image(path, upright=True)
    with Image.open(path) as image:  # Pillow's own reading of the tag
        assert np.array_equal(read, np.asarray(ImageOps.exif_transpose(image).convert("RGB")))
    assert load_rgb_image(path).shape[:2] == stored_size
    if suffix != ".jpg":  # lossless: exactly the picture that was drawn on
        assert np.array_equal(read, upright)


def _via_set(folder: Path) -> Path:
    """Write one JPEG per orientation 1-8 (as a camera stores them) and a VIA file whose rectangles were
    drawn on the upright pictures (as a browser shows them); return the VIA file."""
    entries = {}
    for orientation in ORIENTATIONS:
        name = f"o{orientation}.jpg"
        save_tagged(folder / name, upright_picture(orientation), orientation, quality=95)
        x, y, w, h = RECT
        region = {"shape_attributes": {"name": "rect", "x": x, "y": y, "width": w, "height": h}}
        entries[name] = {"filename": name, "regions": [region]}
    via = folder / "via_region_data.json"
    via.write_text(json.dumps(entries))
    return via


def assert_regions_on_the_rectangles(dataset: CocoInstanceDataset) -> None:
    """Assert that every instance mask covers the bright rectangle of its picture, and nothing else."""
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert tuple(image.shape[1:]) == (HEIGHT, WIDTH)
        (mask,) = target["masks"].bool()
        brightness = image.mean(dim=0)
        assert brightness[mask].mean() > 0.9 and brightness[~mask].mean() < 0.3, target["image_id"]


def test_via_regions_drawn_on_upright_pictures_convert_and_read_upright(tmp_path: Path, caplog) -> None:
    via = _via_set(tmp_path / "photos")
    out = tmp_path / "coco.json"
    with caplog.at_level(logging.INFO, logger="msr.data.convert"):
        assert main(["via", str(via), "--out", str(out)]) == 0
    assert "7 of 8 pictures carry an EXIF orientation (first: o2.jpg)" in caplog.text
    coco = json.loads(out.read_text())
    assert coco["info"]["exif_orientation"] == "apply"
    assert {(i["height"], i["width"]) for i in coco["images"]} == {(HEIGHT, WIDTH)}
    dataset = CocoInstanceDataset(tmp_path / "photos", out)  # exif_orientation=auto: the file says apply
    assert dataset.reading == "apply"
    assert_regions_on_the_rectangles(dataset)


def test_a_coco_file_of_stored_pictures_reads_as_stored(tmp_path: Path) -> None:
    """A tool that annotates the stored pixels: sizes and polygons of the stored pictures, no statement."""
    images, annotations = [], []
    for orientation in ORIENTATIONS:
        name = f"o{orientation}.png"
        upright = upright_picture(orientation)
        save_tagged(tmp_path / "photos" / name, upright, orientation)
        mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        mask[upright[..., 0] > 200] = 1
        stored = np.asarray(Image.fromarray(mask).transpose(STORED[orientation])) if orientation > 1 else mask
        ys, xs = np.nonzero(stored)
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        height, width = stored.shape
        images.append({"id": orientation, "file_name": name, "height": height, "width": width})
        annotations.append(
            {
                "id": orientation,
                "image_id": orientation,
                "category_id": 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                "iscrowd": 0,
            }
        )
    ann = tmp_path / "stored.json"
    categories = [{"id": 1, "name": "a"}]
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    dataset = CocoInstanceDataset(tmp_path / "photos", ann)
    assert dataset.reading == "ignore"
    for index in range(len(dataset)):
        image, target = dataset[index]
        (mask,) = target["masks"].bool()
        assert image.mean(dim=0)[mask].mean() > 0.9  # the box of the bright pixels, as stored
    upright = CocoDataModule(
        val_images=str(tmp_path / "photos"), val_ann=str(ann), exif_orientation="apply", **LOADER
    )
    with pytest.raises(DatasetError, match=r"orientation 5 .*set data\.exif_orientation=ignore \(now apply"):
        upright.setup("validate")


def test_the_wrong_reading_of_a_quarter_turn_names_the_option(tmp_path: Path, caplog) -> None:
    via = _via_set(tmp_path / "photos")
    out = tmp_path / "coco.json"
    assert main(["via", str(via), "--out", str(out)]) == 0
    paths = {"val_images": str(tmp_path / "photos"), "val_ann": str(out), **LOADER}
    with pytest.raises(DatasetError) as wrong:
        CocoDataModule(**paths, exif_orientation="ignore").setup("validate")
    assert str(wrong.value) == (
        f"image {tmp_path / 'photos' / 'o5.jpg'} is stored {HEIGHT}x{WIDTH} (WxH) with EXIF orientation 5 "
        f"(mirrored and turned 90°); {out} says {WIDTH}x{HEIGHT} for image 5, its upright size: the file's "
        "regions are drawn on the upright picture: set data.exif_orientation=apply (now ignore: read as "
        "stored)"
    )
    with pytest.raises(DatasetError, match=r"o5\.jpg is stored .*set data\.exif_orientation=apply"):
        CocoDataModule(**paths, exif_orientation="ignore", skip_unreadable=True).setup("validate")
    with caplog.at_level(logging.WARNING, logger="msr.data.datamodules.checks"):
        dm = CocoDataModule(**paths)  # auto: what the file says
        dm.setup("validate")
    assert caplog.text.count("carry an EXIF orientation") == 1
    assert (
        f"{out}: 7 of 8 pictures carry an EXIF orientation (2 mirrored and turned 90°, 2 turned 90°, "
        "1 mirrored, 1 mirrored upside down, 1 turned 180°; first: "
    ) in caplog.text
    assert "they are read upright (data.exif_orientation=auto: apply); if the annotations" in caplog.text
    assert_regions_on_the_rectangles(dm.val_dataset.dataset)
    with pytest.raises(ConfigError, match=r"exif_orientation must be one of auto, apply, ignore, got 'yes'"):
        CocoDataModule(**paths, exif_orientation="yes")


def test_instance_masks_of_upright_pictures(tmp_path: Path) -> None:
    for orientation in (3, 6):
        upright = upright_picture(orientation)
        save_tagged(tmp_path / "images" / f"o{orientation}.jpg", upright, orientation, quality=95)
        label = (upright[..., 0] > 200).astype(np.uint8)  # drawn on the upright picture
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(label, mode="L").save(tmp_path / "masks" / f"o{orientation}.png")
    out = tmp_path / "masks.json"
    args = ["masks", str(tmp_path / "masks"), "--images", str(tmp_path / "images"), "--out", str(out)]
    assert main([*args, "--category", "a"]) == 0
    coco = json.loads(out.read_text())
    assert {(i["height"], i["width"]) for i in coco["images"]} == {(HEIGHT, WIDTH)}
    assert_regions_on_the_rectangles(CocoInstanceDataset(tmp_path / "images", out))
