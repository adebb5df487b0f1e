"""The detector's box-mask output: the same masks and COCO results as its pasted output, on a model."""

from __future__ import annotations

import torch
from support.tiny_nets import tiny_model

from msr.evaluation.results import predictions_to_coco
from msr.models.mask_paste import BoxMasks
from msr.models.postprocess import MaskFormTransform, box_mask_output


def test_box_mask_output_gives_the_pasted_masks_and_their_rles(batch):
    images, _ = batch
    torch.manual_seed(0)
    model = tiny_model().eval()
    assert isinstance(model.transform, MaskFormTransform)
    with torch.no_grad():
        pasted = model(images)
        with box_mask_output(model):
            cropped = model(images)
        for paste in ("each", "batched"):
            with box_mask_output(model, paste=paste):
                assert all(isinstance(o["masks"], BoxMasks) for o in model(images))
        again = model(images)  # the block leaves the model as it was
    assert all(torch.equal(a["masks"], b["masks"]) for a, b in zip(pasted, again))
    detections = 0
    for image_id, (old, new) in enumerate(zip(pasted, cropped)):
        assert isinstance(new["masks"], BoxMasks)
        assert new["masks"].image_size == tuple(old["masks"].shape[-2:])
        for key in ("boxes", "labels", "scores", "mask_ious", "mask_scores"):
            assert torch.equal(old[key], new[key]), key
        assert torch.equal(new["masks"].to_dense(), old["masks"][:, 0] >= 0.5)
        assert predictions_to_coco(new, image_id, [1, 2]) == predictions_to_coco(old, image_id, [1, 2])
        detections += len(new["boxes"])
    assert detections > 10
