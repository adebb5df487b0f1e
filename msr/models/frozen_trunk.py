"""A frozen Mask R-CNN trunk run once for many MaskIoU branches (the head-only protocol's shared pass).

The head-only protocol trains only MaskIoU heads on a trunk whose weights never change. What a head
needs from a training batch is the mask branch's view of the positive RoIs; `training_inputs` computes
just that, under no_grad: the resized pictures, the FPN features, the RPN's proposals (its anchor
matching and losses are skipped: nothing of the trunk learns), torchvision's sampling of the training
RoIs, and the mask head's pooled features and probabilities of the positives. The box head, whose
output the MaskIoU branch never reads in training, is not run either. `detect` runs the trunk's
ordinary inference once and keeps the MaskIoU inputs of its detections, which every branch then
scores (`msr.models.maskiou.branch`).

Both functions compute exactly what the full detector computes for its MaskIoU branch (same modules,
same order, same random draws for the sampling), so a branch trained here holds the weights it would
hold inside MaskScoringRCNN and scores detections identically.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers

from msr.models.detector import MaskScoringRCNN
from msr.models.maskiou.branch import MaskIoUInputs
from msr.models.maskiou.targets import PositiveRoIs
from msr.models.roi_heads import capture_outputs


def rpn_proposals(rpn: RegionProposalNetwork, images: ImageList, features: dict[str, Tensor]) -> list[Tensor]:
    """Return the RPN's proposals [P_i, 4] per picture (its forward pass without the losses)."""
    levels = list(features.values())
    objectness, deltas = rpn.head(levels)
    anchors = rpn.anchor_generator(images, levels)
    per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
    boxes, _ = rpn.filter_proposals(proposals, objectness, images.image_sizes, per_level)
    return boxes


def _backbone_features(model: MaskScoringRCNN, images: ImageList) -> dict[str, Tensor]:
    """Return the backbone's feature levels of the batch (a single tensor becomes level "0")."""
    features = model.backbone(images.tensors)
    return OrderedDict([("0", features)]) if isinstance(features, Tensor) else features


@torch.no_grad()
def training_inputs(
    model: MaskScoringRCNN, images: list[Tensor], targets: list[dict[str, Tensor]]
) -> MaskIoUInputs:
    """Return the MaskIoU inputs of a training batch: the positive RoIs torchvision samples, their pooled
    features and mask probabilities, and their ground truth (`positives`).

    `model` is in train mode (training resize, proposal counts and sampling); its weights are not used
    for gradients. `targets` hold `boxes`, `labels` and `masks` in the pictures' frame.
    """
    image_list, resized = model.transform(images, targets)
    features = _backbone_features(model, image_list)
    proposals = rpn_proposals(model.rpn, image_list, features)
    heads = model.roi_heads
    proposals, matched_idxs, labels, _ = RoIHeads.select_training_samples(heads, proposals, resized)
    boxes = [p[torch.where(lab > 0)[0]] for p, lab in zip(proposals, labels)]
    roi_features = heads.mask_roi_pool(features, boxes, image_list.image_sizes)
    mask_probs = heads.mask_predictor(heads.mask_head(roi_features)).sigmoid()  # [P, C, M, M]
    positives = PositiveRoIs.from_samples(proposals, matched_idxs, labels, resized, mask_probs.shape[-1])
    return MaskIoUInputs(
        features,
        image_list.image_sizes,
        positives.proposals,
        roi_features,
        mask_probs,
        positives.labels,
        positives,
    )


@torch.no_grad()
def detect(model: MaskScoringRCNN, images: list[Tensor]) -> tuple[list[dict[str, Tensor]], MaskIoUInputs]:
    """Return (detections, MaskIoU inputs) of an inference batch.

    detections: per picture torchvision's post-processed output (`boxes`, `labels`, `scores` and pasted
    `masks` in the picture's frame), the model's own when it has no MaskIoU head; the inputs describe the
    same detections in order (boxes in the resized frame, predicted labels). `model` is in eval mode.
    """
    original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    image_list, _ = model.transform(images)
    features = _backbone_features(model, image_list)
    proposals, _ = model.rpn(image_list, features)
    heads = model.roi_heads
    hooked = {"roi_features": heads.mask_roi_pool, "mask_logits": heads.mask_predictor}
    with capture_outputs(hooked) as captured:
        detections, _ = RoIHeads.forward(heads, features, proposals, image_list.image_sizes)
    boxes = [d["boxes"] for d in detections]  # postprocess below replaces them in the dicts
    labels = torch.cat([d["labels"] for d in detections])
    inputs = MaskIoUInputs(
        features,
        image_list.image_sizes,
        boxes,
        captured["roi_features"],
        captured["mask_logits"].sigmoid(),
        labels,
    )
    return model.transform.postprocess(detections, image_list.image_sizes, original_sizes), inputs
