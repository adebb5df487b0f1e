"""The whole model: losses, gradients, equality with torchvision, batched inference."""

import functools

import pytest
import torch
from support.tiny_nets import TINY, TINY_BACKBONE, tiny_model
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from msr.models import (
    INPUT_DESIGNS,
    TARGET_VARIANTS,
    MaskOnlyMaskIoUHead,
    build_detector,
    build_resnet_fpn_backbone,
)

from .conftest import make_batch


def torchvision_twin(num_classes: int = 3) -> MaskRCNN:
    """Return torchvision's own MaskRCNN with the tiny configuration of tests/models/conftest.py."""
    anchors = AnchorGenerator(tuple((s,) for s in TINY["anchor_sizes"]), ((0.5, 1.0, 2.0),) * 5)
    return MaskRCNN(
        build_resnet_fpn_backbone("resnet18", "bn", 5, 32),
        num_classes=None,
        min_size=TINY["min_size"],
        max_size=TINY["max_size"],
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(32, 3),
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=64,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=64,
        box_head=TwoMLPHead(32 * 7 * 7, 64),
        box_predictor=FastRCNNPredictor(64, num_classes),
        box_batch_size_per_image=32,
        box_detections_per_img=20,
        box_score_thresh=0.0,
        mask_head=MaskRCNNHeads(32, [32, 32], 1),
        mask_predictor=MaskRCNNPredictor(32, 32, num_classes),
    )


def test_baseline_equals_torchvision_mask_rcnn_exactly(batch):
    images, targets = batch
    torch.manual_seed(0)
    ours = tiny_model(design=None, roi_align="torchvision")  # the sparse RoIAlign is equal up to rounding
    theirs = torchvision_twin()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # identical layout, no extra keys

    ours.train(), theirs.train()
    torch.manual_seed(1)
    our_losses = ours(images, targets)
    torch.manual_seed(1)
    their_losses = theirs(images, targets)
    assert (
        set(our_losses)
        == set(their_losses)
        == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    )
    for key in our_losses:
        assert torch.equal(our_losses[key], their_losses[key]), key

    ours.eval(), theirs.eval()
    with torch.no_grad():
        our_out, their_out = ours(images), theirs(images)
    for a, b in zip(our_out, their_out):
        assert set(a) == set(b) == {"boxes", "labels", "scores", "masks"}
        assert len(a["boxes"]) > 0
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_mask_scores_are_class_scores_times_predicted_iou_and_box_scores_unchanged(batch):
    images, _ = batch
    torch.manual_seed(0)
    ms = tiny_model().eval()
    baseline = tiny_model(design=None).eval()
    missing, unexpected = baseline.load_state_dict(ms.state_dict(), strict=False)
    assert not missing and all(k.startswith("roi_heads.maskiou_head.") for k in unexpected)
    with torch.no_grad():
        ms_out, base_out = ms(images), baseline(images)
    for a, b in zip(ms_out, base_out):
        for key in ("boxes", "labels", "scores", "masks"):
            assert torch.equal(a[key], b[key]), key
        assert a["mask_ious"].shape == a["scores"].shape
        torch.testing.assert_close(a["mask_scores"], a["scores"] * a["mask_ious"])


def test_training_steps_lower_maskiou_loss_and_gradient_reaches_mask_head(batch):
    images, targets = batch
    torch.manual_seed(0)
    model = tiny_model().train()

    model.zero_grad()
    torch.manual_seed(3)
    model(images, targets)["loss_maskiou"].backward()
    mask_head_grad = sum(float(p.grad.abs().sum()) for p in model.roi_heads.mask_head.parameters())
    backbone_grad = sum(float(p.grad.abs().sum()) for p in model.backbone.parameters() if p.grad is not None)
    assert mask_head_grad > 0, "the MaskIoU loss must reach the mask head (not detached)"
    assert backbone_grad > 0, "the MaskIoU loss must reach the backbone"

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(12):
        torch.manual_seed(3)  # the same RoI sampling every step: a fixed batch
        losses = model(images, targets)
        history.append(losses["loss_maskiou"].item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < 0.5 * history[0], history


def test_detach_option_stops_the_maskiou_gradient_at_the_head(batch):
    images, targets = batch
    torch.manual_seed(0)
    model = tiny_model(maskiou_detach=True).train()
    torch.manual_seed(3)
    model(images, targets)["loss_maskiou"].backward()
    assert all(p.grad is None for p in model.roi_heads.mask_head.parameters())
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.roi_heads.maskiou_head.parameters()
    )


@pytest.mark.parametrize(
    "design,target",
    [(d, "target_class") for d in INPUT_DESIGNS] + [("concat", t) for t in list(TARGET_VARIANTS)[1:]],
)
def test_every_design_and_target_variant_trains_and_predicts(batch, design, target):
    images, targets = batch
    torch.manual_seed(0)
    model = tiny_model(design=design, target=target).train()
    losses = model(images, targets)
    assert torch.isfinite(losses["loss_maskiou"]) and losses["loss_maskiou"] > 0
    sum(losses.values()).backward()
    assert model.roi_heads.maskiou_head.predictor.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(images[:1])
    assert out[0]["mask_scores"].shape == out[0]["scores"].shape


def test_batched_inference_equals_per_image_inference():
    # Three sizes whose long side is 128 (no resize) and short side in (96, 128]: each pads to 128x128,
    # alone or in the batch, so the backbone sees the same pixels either way.
    torch.manual_seed(0)
    model = tiny_model(min_size=128, max_size=128).eval()
    gen = torch.Generator().manual_seed(5)
    images = [torch.rand(3, h, w, generator=gen) for h, w in [(128, 128), (110, 128), (128, 100)]]
    with torch.no_grad():
        batched = model(images)
        single = [model([im])[0] for im in images]
    for b, s in zip(batched, single):
        assert set(b) == set(s) == {"boxes", "labels", "scores", "masks", "mask_ious", "mask_scores"}
        assert len(b["boxes"]) == model.roi_heads.detections_per_img
        # A batch of 3 runs other conv kernels than a batch of 1: features differ by ~1e-5 (fp32
        # rounding), hence a tolerance here; the heads alone are bit-exact (next test).
        for key in b:
            torch.testing.assert_close(b[key], s[key], rtol=1e-4, atol=1e-4, msg=key)


def test_roi_heads_handle_every_image_of_a_batch_exactly():
    """The heads alone, fed identical features and proposals, give bit-identical per-image results."""
    torch.manual_seed(0)
    model = tiny_model().eval()
    images, _ = make_batch()
    with torch.no_grad():
        image_list, _ = model.transform(images)
        features = model.backbone(image_list.tensors)
        proposals, _ = model.rpn(image_list, features)
        batched, _ = model.roi_heads(features, proposals, image_list.image_sizes)
        for i in range(len(images)):
            feats_i = {k: v[i : i + 1] for k, v in features.items()}
            single, _ = model.roi_heads(feats_i, [proposals[i]], [image_list.image_sizes[i]])
            for key in batched[i]:
                assert torch.equal(batched[i][key], single[0][key]), (i, key)


def test_toy_mask_only_design_trains_and_predicts(batch):
    """The README's worked example: a new design is a small subclass, given to build_detector as a factory."""
    images, targets = batch
    torch.manual_seed(0)
    factory = functools.partial(MaskOnlyMaskIoUHead, conv_channels=16, fc_dim=32)
    model = build_detector(3, build_resnet_fpn_backbone(**TINY_BACKBONE), maskiou_head=factory, **TINY)
    head = model.roi_heads.maskiou_head
    assert isinstance(head, MaskOnlyMaskIoUHead) and head.convs[0].in_channels == 1
    model.train()
    torch.manual_seed(3)
    losses = model(images, targets)
    assert list(losses)[:4] == ["loss_classifier", "loss_box_reg", "loss_mask", "loss_maskiou"]
    assert torch.isfinite(losses["loss_maskiou"]) and losses["loss_maskiou"] > 0
    sum(losses.values()).backward()
    assert head.predictor.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(images)
    for o in out:
        assert o["mask_scores"].shape == o["scores"].shape == o["mask_ious"].shape
        torch.testing.assert_close(o["mask_scores"], o["scores"] * o["mask_ious"])


def test_forward_leaves_no_hooks_and_no_sampled_rois_behind(batch):
    images, targets = batch
    model = tiny_model()
    hooked = (model.roi_heads.mask_roi_pool, model.roi_heads.mask_predictor)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            model(images, targets if train else None)
        assert all(not m._forward_hooks for m in hooked)
        assert model.roi_heads._sampled is None


def test_an_image_without_instances_trains():
    images, targets = make_batch()
    targets[1] = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 96, 128, dtype=torch.uint8),
    }
    torch.manual_seed(0)
    model = tiny_model(target="present_classes").train()
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_keypoint_heads_are_a_clear_error():
    model = tiny_model().eval()
    model.roi_heads.keypoint_roi_pool = MultiScaleRoIAlign(["0"], 14, 2)
    model.roi_heads.keypoint_head = model.roi_heads.keypoint_predictor = torch.nn.Identity()
    with pytest.raises(NotImplementedError, match="does not support keypoint heads"):
        model([torch.rand(3, 64, 64)])


def test_mask_iou_is_the_predicted_iou_of_each_detections_own_class(batch):
    """With several classes detected, each detection's `mask_ious` is the MaskIoU head's output in the
    column of that detection's predicted label (the paper's rescoring), not any other column."""
    images, _ = batch
    torch.manual_seed(0)
    model = tiny_model(num_classes=4, box_detections_per_img=200).eval()  # every class kept
    head_outputs = []
    hook = model.roi_heads.maskiou_head.register_forward_hook(lambda m, args, out: head_outputs.append(out))
    try:
        with torch.no_grad():
            out = model(images)
    finally:
        hook.remove()
    assert len(head_outputs) == 1
    pred_ious = head_outputs[0]  # [D, C]: every detection of the batch, one IoU per class
    labels = torch.cat([o["labels"] for o in out])
    scores = torch.cat([o["scores"] for o in out])
    assert pred_ious.shape == (len(labels), 4)
    assert len(labels.unique()) >= 2, labels  # more than one class detected
    rows = torch.arange(len(labels))
    # every other column differs from the right one, so a wrong column cannot pass by chance
    for shift in (1, 2, 3):
        assert not torch.isclose(pred_ious[rows, (labels + shift) % 4], pred_ious[rows, labels]).any()
    got = torch.cat([o["mask_ious"] for o in out])
    assert torch.equal(got, pred_ious[rows, labels])
    assert torch.equal(torch.cat([o["mask_scores"] for o in out]), scores * pred_ious[rows, labels])


def test_mask_scores_takes_each_rows_own_label_column():
    from msr.models.maskiou.branch import mask_scores

    pred_ious = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [0.15, 0.25, 0.35]])
    labels = torch.tensor([1, 2, 1, 2])
    ious, scores = mask_scores(torch.tensor([1.0, 0.5, 0.25, 2.0]), pred_ious, labels)
    assert ious.tolist() == pytest.approx([0.2, 0.6, 0.8, 0.35])
    assert scores.tolist() == pytest.approx([0.2, 0.3, 0.2, 0.7])
