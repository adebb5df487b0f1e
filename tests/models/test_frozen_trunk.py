"""The frozen trunk run once for many MaskIoU branches computes what the full detector computes for its
own MaskIoU branch: the same inputs, loss and gradients in training, the same scores at inference."""

from __future__ import annotations

import torch
from support.tiny_nets import tiny_model
from torchvision.models.detection.rpn import RegionProposalNetwork

from msr.models import MaskIoULoss, TargetClassTargets, freeze_all_but_maskiou
from msr.models.frozen_trunk import detect, training_inputs
from msr.models.maskiou.branch import MaskIoUBranch


def branch_of(model) -> MaskIoUBranch:
    """Return a branch holding the model's own MaskIoU head, target, loss and gradient stop."""
    heads = model.roi_heads
    return MaskIoUBranch(
        heads.maskiou_head,
        heads.mask_roi_pool,
        heads.maskiou_target,
        heads.maskiou_loss,
        heads.maskiou_detach,
    )


class IsolatedRPNSampler:
    """The RPN's anchor sampler with its own random draws put back, so that the RoI sampling after it sees
    the random state it would see with no RPN loss at all (the frozen trunk computes none)."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def __call__(self, labels):
        with torch.random.fork_rng(devices=[]):
            return self.sampler(labels)


def test_training_inputs_give_the_detectors_own_maskiou_loss_and_gradient(batch):
    torch.manual_seed(0)
    model = tiny_model(design="concat_28").train()  # a head with its own 28x28 RoIAlign
    images, targets = batch
    assert isinstance(model.rpn, RegionProposalNetwork)
    model.rpn.fg_bg_sampler = IsolatedRPNSampler(model.rpn.fg_bg_sampler)
    freeze_all_but_maskiou(model)  # as the head-only protocol trains it
    branch = branch_of(model)

    torch.manual_seed(5)
    full = model(images, targets)["loss_maskiou"]
    full_grads = torch.autograd.grad(full, list(branch.head.parameters()))
    torch.manual_seed(5)
    inputs = training_inputs(model, images, targets)
    shared = branch.training_loss(inputs)
    shared_grads = torch.autograd.grad(shared, list(branch.head.parameters()))

    assert inputs.positives is not None and len(inputs.labels) > 0
    assert not inputs.roi_features.requires_grad and not inputs.mask_probs.requires_grad
    assert torch.equal(full.detach(), shared.detach())
    for a, b in zip(full_grads, shared_grads):
        assert torch.equal(a, b)


def test_training_inputs_skip_the_trunks_losses_and_draw_only_the_roi_sample(batch):
    model = tiny_model().train()
    images, targets = batch
    torch.manual_seed(1)
    training_inputs(model, images, targets)
    after_shared = torch.rand(1)  # the resize draws and the RoI sample, nothing for the RPN's loss
    torch.manual_seed(1)
    model.rpn.fg_bg_sampler = IsolatedRPNSampler(model.rpn.fg_bg_sampler)
    model(images, targets)
    after_full = torch.rand(1)
    assert torch.equal(after_shared, after_full)


def test_detect_scores_the_same_detections_as_the_detector(batch):
    torch.manual_seed(0)
    model = tiny_model(design="multiply").eval()
    images, _ = batch
    with torch.no_grad():
        expected = model(images)
    detections, inputs = detect(model, images)
    ious = branch_of(model).predict(inputs)
    rows = torch.arange(len(inputs.labels))
    got = ious[rows, inputs.labels].split([len(d["boxes"]) for d in detections])
    assert sum(len(d["boxes"]) for d in detections) > 0
    for mine, theirs, image_ious in zip(detections, expected, got):
        for key in ("boxes", "labels", "scores", "masks"):
            assert torch.equal(mine[key], theirs[key]), key
        assert torch.equal(image_ious, theirs["mask_ious"])


def test_branch_defaults_are_the_papers_target_and_loss():
    model = tiny_model()
    branch = MaskIoUBranch(model.roi_heads.maskiou_head, model.roi_heads.mask_roi_pool)
    assert isinstance(branch.target, TargetClassTargets) and isinstance(branch.loss, MaskIoULoss)
    assert branch.roi_pool is None  # the concat design reads the mask branch's 14x14 features
    assert [k for k in branch.state_dict()] == [
        f"head.{k}" for k in model.roi_heads.maskiou_head.state_dict()
    ]
