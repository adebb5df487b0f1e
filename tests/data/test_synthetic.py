"""The embedded synthetic set: determinism, COCO round trip, cache behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from msr.data import synthetic
from msr.data.synthetic import (
    CATEGORY_NAMES,
    generate_synthetic_coco,
    synthetic_cache_key,
    synthetic_params,
    write_synthetic_coco,
)

# pycocotools (annToMask/decode) calls np.array(copy=False) on its own buffer: harmless under NumPy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = {"num_train": 6, "num_val": 2, "image_size": 64}


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    first = _file_bytes(write_synthetic_coco(tmp_path / "a", seed=7, **TINY).root)
    second = _file_bytes(write_synthetic_coco(tmp_path / "b", seed=7, **TINY).root)
    other = _file_bytes(write_synthetic_coco(tmp_path / "c", seed=8, **TINY).root)
    assert len(first) == 6 + 2 + 3  # pictures, two annotation files, params.json
    assert first == second
    assert first.keys() == other.keys()
    pictures = [name for name in first if name.endswith(".png")]
    assert all(first[name] != other[name] for name in pictures)


def test_json_survives_pycocotools_round_trip(tiny_synthetic) -> None:
    coco = COCO(str(tiny_synthetic.train_ann))
    assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == list(CATEGORY_NAMES)
    assert len(coco.imgs) == 8 and len(coco.anns) > 0
    for ann in coco.anns.values():
        mask = coco.annToMask(ann)
        assert mask.shape == (64, 64)
        assert int(mask.sum()) == ann["area"] > 0
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert ann["iscrowd"] == 0
    for image in coco.imgs.values():
        assert (tiny_synthetic.train_images / image["file_name"]).is_file()


def test_occlusion_leaves_instances_disjoint(tiny_synthetic) -> None:
    coco = COCO(str(tiny_synthetic.train_ann))
    for image_id in coco.imgs:
        masks = [coco.annToMask(a) for a in coco.imgToAnns[image_id]]
        if masks:
            # visible parts never overlap: each pixel belongs to at most one instance
            assert np.stack(masks).sum(axis=0).max() <= 1


def test_objects_vary_in_class_and_size(tmp_path: Path) -> None:
    paths = write_synthetic_coco(tmp_path / "set", num_train=40, num_val=0, image_size=96, seed=1)
    anns = json.loads(paths.train_ann.read_text())["annotations"]
    assert {a["category_id"] for a in anns} == set(range(1, len(CATEGORY_NAMES) + 1))
    areas = [a["area"] for a in anns]
    assert max(areas) > 8 * min(areas)
    # rings have holes: some ring's mask does not fill its own bounding box's centre
    rings = [a for a in anns if a["category_id"] == CATEGORY_NAMES.index("ring") + 1]
    assert rings and any(
        mask_utils.decode(a["segmentation"]).sum() < a["bbox"][2] * a["bbox"][3] / 2 for a in rings
    )


def test_cache_reuses_folder_and_keys_on_parameters(tmp_path: Path) -> None:
    first = generate_synthetic_coco(tmp_path, seed=1, **TINY)
    stamp = first.train_ann.stat().st_mtime_ns
    again = generate_synthetic_coco(tmp_path, seed=1, **TINY)
    other = generate_synthetic_coco(tmp_path, seed=2, **TINY)
    assert again == first and again.train_ann.stat().st_mtime_ns == stamp
    assert other.root != first.root
    assert first.root.name == synthetic_cache_key(synthetic_params(seed=1, **TINY))
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir()) == sorted(
        [first.root.name, other.root.name]
    )


def test_cache_dir_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_CACHE_DIR", str(tmp_path / "env_cache"))
    paths = generate_synthetic_coco(seed=4, **TINY)
    assert paths.root.parent == tmp_path / "env_cache" / "synthetic"


def test_interrupted_generation_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = synthetic.write_synthetic_coco

    def write_then_fail(out_dir, **params):
        real_write(out_dir, **params)
        raise KeyboardInterrupt  # interrupted after writing, before the rename

    monkeypatch.setattr(synthetic, "write_synthetic_coco", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_coco(tmp_path, seed=5, **TINY)
    assert list((tmp_path / "synthetic").iterdir()) == []
    monkeypatch.undo()
    assert generate_synthetic_coco(tmp_path, seed=5, **TINY).exists()


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_objects"):
        synthetic_params(min_objects=5, max_objects=2)
    with pytest.raises(ValueError, match="image_size"):
        synthetic_params(image_size=8)
    assert synthetic_params(image_size=(48, 80))["image_size"] == [48, 80]
