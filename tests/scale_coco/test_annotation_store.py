"""The AnnotationStore-backed CocoInstanceDataset gives exactly the samples of the old one (pycocotools
index + per-image Python dicts, kept in experiments/benchmarks as commit 3020009 left it, so that a shallow
clone runs these tests too), holds no Python object per annotation, and its store answers by image id."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _old_coco import old_coco_module

from msr.data.annotation_store import AnnotationStore, AnnotationStoreBuilder
from msr.data.coco import CocoInstanceDataset
from msr.errors import DatasetError

# pycocotools (decode) calls np.array(copy=False) on its own buffer: harmless under NumPy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

OPTIONS = [{}, {"include_crowd": True}, {"drop_empty": True, "min_box_size": 4.0}]


def old_dataset(*args, **kwargs):
    """Return the old CocoInstanceDataset over the same files (experiments/benchmarks/_old_coco.py)."""
    module = old_coco_module()
    assert hasattr(module.CocoInstanceDataset, "_prepare_annotations")  # the old storage indeed
    return module.CocoInstanceDataset(*args, **kwargs)


def assert_same_samples(images: Path, ann: Path, **options) -> int:
    """Assert the old and the new data set give identical attributes and samples; return the count."""
    old, new = old_dataset(images, ann, **options), CocoInstanceDataset(images, ann, **options)
    assert new.ids == old.ids and new.stats == old.stats
    assert new.class_names == old.class_names and new.num_classes == old.num_classes
    assert new.cat_id_to_label == old.cat_id_to_label and new.label_to_cat_id == old.label_to_cat_id
    assert new.aspect_ratios() == old.aspect_ratios()
    assert [new.image_path(i) for i in new.ids] == [old.image_path(i) for i in old.ids]
    for index in range(len(new)):
        (old_image, old_target), (new_image, new_target) = old[index], new[index]
        assert torch.equal(new_image, old_image)
        assert new_target.keys() == old_target.keys()
        for key, value in old_target.items():
            if isinstance(value, torch.Tensor):
                assert type(new_target[key]) is type(value) and new_target[key].dtype == value.dtype, key
                assert torch.equal(new_target[key], value), (key, index)
            else:
                assert new_target[key] == value, key
        assert new_target["boxes"].canvas_size == old_target["boxes"].canvas_size
    return len(new)


@pytest.mark.parametrize("options", OPTIONS)
def test_same_samples_on_the_shared_coco_fixture(coco_fixture, options) -> None:
    assert assert_same_samples(*coco_fixture, **options) > 0


def test_same_samples_on_the_synthetic_set(synthetic_set) -> None:
    assert assert_same_samples(synthetic_set.train_images, synthetic_set.train_ann) == 8
    assert assert_same_samples(synthetic_set.val_images, synthetic_set.val_ann, drop_empty=True) > 0


@pytest.mark.parametrize("options", OPTIONS)
def test_same_samples_on_coco_like_pictures(coco_like_root, options) -> None:
    ann = coco_like_root / "annotations" / "instances_train2017.json"
    assert assert_same_samples(coco_like_root / "train2017", ann, **options) > 0


def test_no_python_object_per_annotation_and_no_pycocotools_index(coco_fixture) -> None:
    dataset = CocoInstanceDataset(*coco_fixture, include_crowd=True)
    assert "coco" not in vars(dataset)  # built only when asked for
    store = dataset._targets
    assert isinstance(store, AnnotationStore) and store.num_annotations > 0
    arrays = [v for v in vars(store).values() if isinstance(v, np.ndarray)]
    assert sum(a.nbytes for a in arrays) == store.nbytes
    assert all(v.dtype != object for v in arrays)
    # the pycocotools index on demand, for inspection; not carried to workers started by spawn
    assert dataset.coco.getImgIds()
    assert "coco" not in vars(pickle.loads(pickle.dumps(dataset)))


def test_store_answers_by_image_id_in_file_order() -> None:
    builder = AnnotationStoreBuilder()
    builder.add_image(30, "c.png", 10, 20)
    builder.add_annotation(7, [1, 2, 3, 4], 2, 0, None, [[0, 0, 5, 0, 5, 5], [1.5, 1, 2, 1, 2, 2]])
    builder.add_image(10, "é.png", 8, 8)
    builder.add_image(20, "b.png", 4, 5)
    builder.add_annotation(8, [0, 0, 2, 2], 1, 1, 6.0, {"size": [4, 5], "counts": "34="})
    store = builder.build()
    assert list(store) == [30, 10, 20] and len(store) == 3
    assert store.position(20) == 2 and store.file_name(1) == "é.png" and store.size(0) == (10, 20)
    with pytest.raises(KeyError):
        store.position(15)
    first = store[30]
    assert first["anns"] == [
        {
            "id": 7,
            "segmentation": [[0.0, 0.0, 5.0, 0.0, 5.0, 5.0], [1.5, 1.0, 2.0, 1.0, 2.0, 2.0]],
            "iscrowd": 0,
        }
    ]
    assert first["boxes"].tolist() == [[1, 2, 3, 4]] and first["labels"].tolist() == [2]
    assert store[10]["anns"] == [] and store[10]["boxes"].shape == (0, 4)
    assert store[20]["anns"] == [
        {"id": 8, "segmentation": {"size": [4, 5], "counts": b"34="}, "iscrowd": 1, "area": 6.0}
    ]


def test_duplicate_or_non_integer_image_ids_are_refused() -> None:
    builder = AnnotationStoreBuilder()
    builder.add_image(1, "a.png", 4, 4)
    builder.add_image(1, "b.png", 4, 4)
    with pytest.raises(DatasetError, match="duplicate image ids"):
        builder.build()
    with pytest.raises(DatasetError, match="'x1' is not an integer"):
        AnnotationStoreBuilder().add_image("x1", "a.png", 4, 4)
