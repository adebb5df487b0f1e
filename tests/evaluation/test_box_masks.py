"""Masks kept as box crops give the very RLEs of torchvision's paste then >= 0.5 (and the same segm AP)."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import roi_align

from msr.data.segmentation import decode_masks, encode_masks, segmentation_to_rle
from msr.evaluation.masks import encode_box_masks, mask_counts
from msr.evaluation.results import predictions_to_coco
from msr.evaluation.scoring import evaluate_results
from msr.models.mask_paste import BoxMasks, paste_box_masks
from msr.viz.overlays import draw_instances, enlarge_instances


def old_binary(probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Return today's masks: torchvision's full-image paste, then probability >= 0.5 ([N, H, W] bool)."""
    return paste_masks_in_image(probs, boxes, size)[:, 0] >= 0.5


def random_detections(gen: torch.Generator, n: int, height: int, width: int, ties: bool):
    """Return (probs [n, 1, 28, 28], boxes [n, 4]): boxes anywhere, many at the border, many under a
    pixel wide, clipped to the image as the detector clips them; `ties`: probabilities 0.25/0.5/0.75, so
    resized values land exactly on 0.5."""
    corner = torch.rand(n, 2, generator=gen) * torch.tensor([width + 20.0, height + 20.0]) - 10
    size = torch.rand(n, 2, generator=gen) ** 4 * torch.tensor([width, height]) * 1.5
    size[: n // 4] = torch.rand(n // 4, 2, generator=gen)  # sub-pixel boxes
    boxes = torch.cat([corner, corner + size], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    probs = torch.rand(n, 1, 28, 28, generator=gen)
    if ties:
        probs = torch.randint(1, 4, (n, 1, 28, 28), generator=gen).float() / 4
    return probs, boxes


@pytest.mark.parametrize("ties", [False, True])
def test_random_boxes_give_torchvisions_masks_and_rles(ties):
    gen = torch.Generator().manual_seed(7 + ties)
    for height, width in [(37, 53), (64, 29), (1, 9)]:
        for _ in range(15):
            probs, boxes = random_detections(gen, 24, height, width, ties)
            old = old_binary(probs, boxes, (height, width))
            new = paste_box_masks(probs, boxes, (height, width))
            assert torch.equal(new.to_dense(), old)
            assert encode_box_masks(new) == encode_masks(old)


def test_batched_paste_differs_only_by_rounding_at_the_threshold():
    gen = torch.Generator().manual_seed(3)
    for ties in (False, True):
        for _ in range(10):
            probs, boxes = random_detections(gen, 40, 45, 61, ties)
            dense = paste_masks_in_image(probs, boxes, (45, 61))[:, 0]
            batched = paste_box_masks(probs, boxes, (45, 61), batched=True).to_dense()
            differ = batched != (dense >= 0.5)
            if not ties:  # continuous probabilities: no pixel this close to 0.5
                assert not differ.any()
            assert torch.all((dense[differ] - 0.5).abs() < 2e-6)


def test_rle_counts_of_crops_at_every_edge():
    gen = np.random.default_rng(0)
    height, width = 6, 5
    cases = [
        (np.ones((6, 5), bool), (0, 0, 5, 6)),  # one run through every column
        (np.ones((6, 2), bool), (3, 0, 5, 6)),  # ends on the last pixel
        (np.zeros((3, 3), bool), (1, 1, 4, 4)),  # empty mask
        (np.zeros((0, 3), bool), (1, 6, 4, 6)),  # empty region
    ]
    cases += [(gen.random((4, 3)) < 0.5, (2, 2, 5, 6)) for _ in range(30)]
    cases += [(gen.random((6, 3)) < 0.7, (0, 0, 3, 6)) for _ in range(30)]
    for crop, region in cases:
        dense = np.zeros((height, width), np.uint8)
        x0, y0, x1, y1 = region
        dense[y0:y1, x0:x1] = crop
        expected = mask_utils.encode(np.asfortranarray(dense))
        got = mask_counts(crop, list(region), height, width)
        assert sum(got) == height * width
        assert mask_utils.frPyObjects({"size": [height, width], "counts": got}, height, width) == expected


def test_box_masks_select_enlarge_and_draw_as_dense_masks():
    gen = torch.Generator().manual_seed(1)
    probs, boxes = random_detections(gen, 12, 30, 40, ties=False)
    masks = paste_box_masks(probs, boxes, (30, 40))
    dense = masks.to_dense()
    keep = torch.rand(12, generator=gen) > 0.4
    assert torch.equal(masks[keep].to_dense(), dense[keep])
    assert len(masks[torch.zeros(12, dtype=torch.bool)]) == 0
    big = enlarge_instances({"boxes": boxes, "masks": masks}, 3)["masks"]
    big_dense = enlarge_instances({"boxes": boxes, "masks": dense}, 3)["masks"] >= 0.5
    assert torch.equal(big.to_dense(), big_dense)
    image = torch.rand(3, 30, 40, generator=gen)
    labels = list(range(1, 13))
    drawn = draw_instances(image, boxes, masks, labels)
    assert np.array_equal(drawn, draw_instances(image, boxes, dense, labels))
    with pytest.raises(ValueError, match="crop pixels"):
        BoxMasks(torch.zeros(3, dtype=torch.bool), torch.tensor([[0, 0, 2, 2]]), (4, 4))


def fixture_detections(dataset: dict, image: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Return a model-like output for a fixture picture: per ground-truth instance a jittered box and
    28x28 probabilities of its mask inside that box (soft edges, noise)."""
    h, w = image["height"], image["width"]
    anns = [a for a in dataset["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
    if not anns:
        return {}
    masks = torch.from_numpy(decode_masks([segmentation_to_rle(a["segmentation"], h, w) for a in anns], h, w))
    masks = masks.float()
    x, y, bw, bh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).unbind(1)
    boxes = torch.stack([x, y, x + bw, y + bh], 1)
    boxes += torch.randn(boxes.shape, generator=gen) * torch.stack([bw, bh, bw, bh], 1) * 0.05
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    rois = torch.cat([torch.arange(len(anns), dtype=torch.float32)[:, None], boxes], 1)
    probs = roi_align(masks[:, None], rois, (28, 28), 1.0, 2, aligned=False)  # [N, 1, 28, 28]
    probs = (probs + torch.randn(probs.shape, generator=gen) * 0.1).clamp(0, 1)
    labels = torch.tensor([a["category_id"] for a in anns])
    scores = torch.rand(len(anns), generator=gen)
    return {"boxes": boxes, "labels": labels, "scores": scores, "probs": probs}


def test_fixture_rles_and_segm_ap_unchanged(fixture_dir):
    ann_file = fixture_dir / "instances_val2014_100.json"
    dataset = json.loads(ann_file.read_text())
    cat_map = {c["id"]: c["id"] for c in dataset["categories"]}
    gen = torch.Generator().manual_seed(0)
    old_results, new_results = [], []
    for image in dataset["images"]:
        out = fixture_detections(dataset, image, gen)
        if not out:
            continue
        size = (image["height"], image["width"])
        old = {**out, "masks": paste_masks_in_image(out["probs"], out["boxes"], size)}
        new = {**out, "masks": paste_box_masks(out["probs"], out["boxes"], size)}
        old_results += predictions_to_coco(old, image["id"], cat_map)[1]
        new_results += predictions_to_coco(new, image["id"], cat_map)[1]
    assert len(new_results) > 500 and new_results == old_results
    ids = [i["id"] for i in dataset["images"]]
    old_ap = evaluate_results({"segm": old_results}, str(ann_file), img_ids=ids, per_class=False).metrics
    new_ap = evaluate_results({"segm": new_results}, str(ann_file), img_ids=ids, per_class=False).metrics
    assert old_ap["segm/AP"] > 0.1
    assert all(abs(old_ap[k] - new_ap[k]) <= 1e-12 for k in old_ap if k.startswith("segm/"))
