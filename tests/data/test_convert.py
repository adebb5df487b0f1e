"""msr-convert: VIA (balloon) and instance-mask PNGs to COCO, loaded back through the data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from support.loaders import LOADER

from msr.cli.convert import main as convert_main
from msr.data.coco import CocoInstanceDataset
from msr.data.convert import masks_to_coco
from msr.data.datamodules import CocoDataModule
from msr.errors import DatasetError


def test_balloon_converts_and_loads(balloon_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "balloon_train.json"
    via = balloon_dir / "train" / "via_region_data.json"
    assert main(["via", str(via), "--out", str(out), "--category", "balloon"]) == 0
    assert "61 images" in capsys.readouterr().out

    regions = sum(len(e["regions"]) for e in json.loads(via.read_text()).values())
    coco = COCO(str(out))
    assert len(coco.imgs) == 61 and len(coco.anns) == regions
    assert [c["name"] for c in coco.cats.values()] == ["balloon"]
    for image in list(coco.imgs.values())[:5]:  # sizes come from the files themselves
        with Image.open(balloon_dir / "train" / image["file_name"]) as picture:
            assert picture.size == (image["width"], image["height"])

    dataset = CocoInstanceDataset(balloon_dir / "train", out)
    assert len(dataset) == 61 and dataset.class_names == ["__background__", "balloon"]
    image, target = dataset[0]
    n = len(coco.imgToAnns[target["image_id"]])
    assert target["masks"].shape == (n, *image.shape[1:]) and (target["labels"] == 1).all()
    for mask, area in zip(target["masks"], target["area"]):  # polygon area vs rasterised pixels
        assert abs(int(mask.sum()) - float(area)) < 0.02 * float(area)


def test_balloon_through_the_datamodule(balloon_dir: Path, tmp_path: Path) -> None:
    for split in ("train", "val"):
        via, out = balloon_dir / split / "via_region_data.json", tmp_path / f"{split}.json"
        assert main(["via", str(via), "--out", str(out), "--category", "balloon"]) == 0
    dm = CocoDataModule(
        train_images=str(balloon_dir / "train"),
        train_ann=str(tmp_path / "train.json"),
        val_images=str(balloon_dir / "val"),
        val_ann=str(tmp_path / "val.json"),
        **LOADER,
        min_size=128,
        max_size=192,
    )
    assert dm.num_classes == 2
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert len(images) == 2 and all(max(i.shape[1:]) <= 192 for i in images)
    assert all(len(t["boxes"]) == len(t["masks"]) > 0 for t in targets)
    assert len(dm.val_dataset) == 13


def _write_label_set(root: Path) -> dict[str, np.ndarray]:
    """Write 3 pictures with label PNGs (8-bit, palette and 16-bit); return the label arrays."""
    labels = {}
    rng = np.random.default_rng(0)
    for name, mode in (("one", "L"), ("two", "P"), ("sub/three", "I;16")):
        label = np.zeros((24, 32), dtype=np.uint16)
        label[2:10, 3:12] = 1
        label[12:20, 5:30] = 7 if mode != "I;16" else 300
        label[14:18, 8:12] = 0  # a hole
        if name == "two":
            label[:] = 0  # no instance at all
        labels[name] = label
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            root / "images" / f"{name}.jpg"
        )
        if mode == "I;16":
            Image.fromarray(label).save(root / "masks" / f"{name}.png")
        else:
            Image.fromarray(label.astype(np.uint8), mode="L").convert(mode).save(
                root / "masks" / f"{name}.png"
            )
    return labels


def main(argv: list[str]) -> int:
    """Run msr-convert's console entry point on `argv`; return its exit status, as the shell sees it."""
    try:
        return convert_main(argv)
    except SystemExit as stopped:
        return int(stopped.code)


def convert_masks(root: Path, out: Path, category: str) -> int:
    """Run `msr-convert masks` on the label set under `root`; return its exit status."""
    images = ["--images", str(root / "images")]
    return main(["masks", str(root / "masks"), *images, "--out", str(out), "--category", category])


def test_masks_round_trip(tmp_path: Path) -> None:
    labels = _write_label_set(tmp_path)
    out = tmp_path / "masks.json"
    assert convert_masks(tmp_path, out, "thing") == 0
    dataset = CocoInstanceDataset(tmp_path / "images", out)
    by_name = {dataset.coco.imgs[i]["file_name"]: i for i in dataset.ids}
    assert sorted(by_name) == ["one.jpg", "sub/three.jpg", "two.jpg"]
    for stem, label in labels.items():
        _, target = dataset[dataset.ids.index(by_name[f"{stem}.jpg"])]
        values = [v for v in np.unique(label) if v]
        assert len(target["masks"]) == len(values)
        for mask, value, area in zip(target["masks"], values, target["area"]):
            assert np.array_equal(mask.numpy().astype(bool), label == value)  # exact round trip
            assert float(area) == (label == value).sum()
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = np.nonzero(mask.numpy())
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_masks_category_map(tmp_path: Path) -> None:
    _write_label_set(tmp_path)
    data = masks_to_coco(
        tmp_path / "masks",
        tmp_path / "images",
        category_map={"*": {"1": "cat"}, "one": {"7": "dog"}},
        category="other",
    )
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert sorted(names.values()) == ["cat", "dog", "other"]
    per_image = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(names[ann["category_id"]])
    assert per_image == {1: ["cat", "dog"], 2: ["cat", "other"]}  # one.jpg, sub/three.jpg (two.jpg empty)
    with pytest.raises(DatasetError, match=r"one\.png.*value 7"):
        masks_to_coco(tmp_path / "masks", tmp_path / "images", category_map={"*": {"1": "cat", "300": "x"}})


def test_converter_errors_name_the_file(tmp_path: Path, capsys) -> None:
    _write_label_set(tmp_path)
    (tmp_path / "images" / "one.jpg").unlink()
    assert convert_masks(tmp_path, tmp_path / "x.json", "a") == 2
    assert "one" in capsys.readouterr().err

    via = tmp_path / "via.json"
    via.write_text(json.dumps({"k": {"filename": "missing.jpg", "regions": {}}}))
    assert main(["via", str(via), "--out", str(tmp_path / "y.json")]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    via.write_text("{not json")
    assert main(["via", str(via), "--out", str(tmp_path / "y.json")]) == 2
    assert "via.json" in capsys.readouterr().err
