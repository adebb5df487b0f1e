"""How MaskScoringRoIHeads is put together: it keeps every module and setting of the torchvision heads it is
built from, its MaskIoU options default to the paper's and are used as given, and a head that pools its own
RoI features at another size predicts on a model that has never run before."""

from __future__ import annotations

import pytest
import torch
from support.tiny_nets import TINY_HEAD, tiny_model
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import MultiScaleRoIAlign

from msr.models import ConcatMaskIoUHead, MaskIoULoss, TargetClassTargets
from msr.models.roi_heads import MaskScoringRoIHeads


def plain_roi_heads():
    """Return the RoI heads of a tiny plain Mask R-CNN, with box-coder weights other than torchvision's
    default (10, 10, 5, 5) and keypoint modules, so that every setting copied is visible."""
    roi_heads = tiny_model(design=None).roi_heads
    roi_heads.box_coder = BoxCoder((1.0, 2.0, 3.0, 4.0))
    roi_heads.keypoint_roi_pool = MultiScaleRoIAlign(["0"], 14, 2)
    roi_heads.keypoint_head = torch.nn.Identity()
    roi_heads.keypoint_predictor = torch.nn.Identity()
    return roi_heads


def test_from_roi_heads_keeps_every_module_and_setting():
    source = plain_roi_heads()
    built = MaskScoringRoIHeads.from_roi_heads(source)
    for name in (
        "box_roi_pool", "box_head", "box_predictor", "mask_roi_pool", "mask_head", "mask_predictor",
        "keypoint_roi_pool", "keypoint_head", "keypoint_predictor",
    ):  # fmt: skip
        assert getattr(built, name) is getattr(source, name), name
    assert built.box_coder.weights == (1.0, 2.0, 3.0, 4.0)
    assert built.proposal_matcher.high_threshold == source.proposal_matcher.high_threshold
    assert built.proposal_matcher.low_threshold == source.proposal_matcher.low_threshold
    assert built.fg_bg_sampler.batch_size_per_image == source.fg_bg_sampler.batch_size_per_image
    assert built.fg_bg_sampler.positive_fraction == source.fg_bg_sampler.positive_fraction
    assert (built.score_thresh, built.nms_thresh) == (source.score_thresh, source.nms_thresh)
    assert built.detections_per_img == source.detections_per_img
    assert built.maskiou_head is None and not built.has_maskiou


def test_keypoint_heads_copied_from_torchvision_are_refused_by_name():
    built = MaskScoringRoIHeads.from_roi_heads(plain_roi_heads()).eval()
    features = {"0": torch.rand(1, 32, 16, 16)}
    with pytest.raises(NotImplementedError, match=r"^MaskScoringRoIHeads does not support keypoint heads$"):
        built(features, [torch.tensor([[0.0, 0.0, 8.0, 8.0]])], [(64, 64)])


def test_maskiou_options_default_to_the_target_class_loss_and_no_gradient_stop():
    head = ConcatMaskIoUHead(num_classes=3, **TINY_HEAD)
    built = MaskScoringRoIHeads.from_roi_heads(tiny_model(design=None).roi_heads, maskiou_head=head)
    assert built.maskiou_head is head and built.has_maskiou
    assert type(built.maskiou_target) is TargetClassTargets and type(built.maskiou_loss) is MaskIoULoss
    assert built.maskiou_detach is False
    assert built.maskiou_roi_pool is None  # the head's 14 x 14 features are the mask branch's


def test_given_target_loss_and_roi_pool_are_used_as_given():
    head = ConcatMaskIoUHead(num_classes=3, **TINY_HEAD)
    target, loss = TargetClassTargets(binarize_threshold=0.4), MaskIoULoss()
    pool = MultiScaleRoIAlign(["0", "1"], 14, 2)
    built = MaskScoringRoIHeads.from_roi_heads(
        tiny_model(design=None).roi_heads,
        maskiou_head=head,
        maskiou_target=target,
        maskiou_loss=loss,
        maskiou_detach=True,
        maskiou_roi_pool=pool,
    )
    assert built.maskiou_target is target and built.maskiou_loss is loss and built.maskiou_roi_pool is pool
    assert built.maskiou_detach is True


def test_a_head_pooling_its_own_features_predicts_on_a_model_that_never_ran():
    """concat_28 pools 28 x 28 features with a RoIAlign of its own, whose scales are set from the pictures'
    sizes at its first call: inference as the model's very first forward works and scores every mask."""
    torch.manual_seed(0)
    model = tiny_model(design="concat_28").eval()
    assert model.roi_heads.maskiou_roi_pool is not None and model.roi_heads.maskiou_roi_pool.scales is None
    with torch.no_grad():
        out = model([torch.rand(3, 64, 80), torch.rand(3, 72, 64)])
    for detections in out:
        assert detections["mask_ious"].shape == detections["scores"].shape
        assert torch.equal(detections["mask_scores"], detections["scores"] * detections["mask_ious"])
    assert model.roi_heads.maskiou_roi_pool.scales is not None
