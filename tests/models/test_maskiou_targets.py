import pytest
import torch

from msr.models import (
    AllClassesOthersZeroTargets,
    AllClassesTargets,
    PositiveRoIs,
    PresentClassesTargets,
    TargetClassTargets,
    mask_area_ratios,
    maskiou_targets,
    pixels_inside_boxes,
    present_class_targets,
)


def test_target_with_gt_extending_outside_the_proposal():
    # 4x4 grid. The GT covers the left half of the RoI (8 cells) and the RoI holds half of the
    # instance (area ratio 0.5), so the whole instance is 16 cells. The prediction covers the same
    # 8 cells with probability 0.55 (foreground) and 0.45 elsewhere (background).
    gt = torch.zeros(1, 4, 4)
    gt[0, :, :2] = 1
    probs = torch.full((1, 4, 4), 0.45)
    probs[0, :, :2] = 0.55
    iou = maskiou_targets(probs, gt, torch.tensor([0.5]))
    # overlap 8, pred 8, gt_full 16 -> 8 / (8 + 16 - 8) = 0.5
    assert iou.tolist() == [pytest.approx(0.5)]


def test_probability_055_counts_as_foreground_but_logit_thresholding_would_not():
    gt = torch.ones(1, 2, 2)
    probs = torch.full((1, 2, 2), 0.55)
    assert maskiou_targets(probs, gt, torch.tensor([1.0])).item() == pytest.approx(1.0)
    # Thresholding the logit at 0.5 (the official code's old bug) means probability > 0.62: IoU 0.
    logits = torch.logit(probs)
    assert maskiou_targets((logits > 0.5).float(), gt, torch.tensor([1.0])).item() == 0.0


def test_targets_known_exactly_for_several_rois():
    gt = torch.zeros(3, 4, 4)
    gt[0] = 1  # whole RoI is GT, instance fully inside
    gt[1, :2] = 1  # top half
    probs = torch.zeros(3, 4, 4)
    probs[0, :, :2] = 0.9  # predicts half of it
    probs[1] = 0.8  # predicts everything
    probs[2] = 0.7  # GT empty (instance entirely elsewhere)
    ious = maskiou_targets(probs, gt, torch.tensor([1.0, 0.25, 0.0]))
    # roi0: 8/16; roi1: overlap 8, pred 16, gt_full 8/0.25=32 -> 8/(16+32-8)=0.2; roi2: 0/16
    torch.testing.assert_close(ious, torch.tensor([0.5, 0.2, 0.0]))
    assert torch.isfinite(ious).all()


def test_empty_prediction_and_empty_gt_give_zero_not_nan():
    ious = maskiou_targets(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), torch.tensor([0.0]))
    assert ious.tolist() == [0.0]


def test_mask_area_ratios_on_hand_built_masks():
    masks = torch.zeros(3, 10, 12, dtype=torch.uint8)
    masks[0, 0:4, 0:4] = 1  # 16 px square in the top-left corner
    masks[1, 2:8, 6:12] = 1  # 36 px square
    # masks[2] is empty
    proposals = torch.tensor(
        [
            [0.0, 0.0, 4.0, 4.0],  # exactly the first square
            [0.0, 0.0, 2.0, 4.0],  # its left half: 8 / 16
            [6.0, 2.0, 9.0, 5.0],  # 3x3 corner of the second: 9 / 36
            [0.0, 0.0, 12.0, 10.0],  # whole image, empty GT -> 0, not NaN
            [1.4, 0.6, 3.6, 3.4],  # pixel centres 1.5..2.5 x 1.5..2.5 (and row 0.5? no: 0.5 < 0.6)
        ]
    )
    matched = torch.tensor([0, 0, 1, 2, 0])
    ratios = mask_area_ratios(masks, proposals, matched)
    # last box: columns with centre in [1.4, 3.6): 1.5, 2.5, 3.5 -> 3; rows in [0.6, 3.4): 1.5, 2.5 -> 2
    torch.testing.assert_close(ratios, torch.tensor([1.0, 0.5, 0.25, 0.0, 6 / 16]))
    assert pixels_inside_boxes(masks, proposals[:1], matched[:1]).tolist() == [16.0]


def test_mask_area_ratios_box_outside_image_is_clipped():
    masks = torch.ones(1, 5, 5)
    ratios = mask_area_ratios(masks, torch.tensor([[-10.0, -10.0, 2.0, 20.0]]), torch.tensor([0]))
    assert ratios.tolist() == [pytest.approx(10 / 25)]


def test_present_class_targets_marks_classes_inside_the_roi():
    masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
    masks[0, :, :4] = 1  # class 1 on the left half
    masks[1, :, 4:] = 1  # class 2 on the right half
    labels = torch.tensor([1, 2])
    # RoIAlign (torchvision's mask-target crop, aligned=False) samples half a pixel past the box edge,
    # so RoI 0 stops at x=3 to stay clear of class 2, which starts at x=4.
    proposals = torch.tensor([[0.0, 0.0, 3.0, 8.0], [0.0, 0.0, 8.0, 8.0]])
    probs = torch.zeros(2, 3, 4, 4)
    probs[:, 1, :, :2] = 0.9  # class-1 prediction: left half of the RoI
    probs[:, 2, :, 2:] = 0.9  # class-2 prediction: right half
    targets, present = present_class_targets(probs, proposals, masks, labels)
    assert present.tolist() == [[False, True, False], [False, True, True]]
    # RoI 0: class-1 GT fills the 4x4 crop (16 cells) but only 24 of its 32 pixels are inside the box,
    # so the whole instance counts 16 / 0.75 cells; the prediction covers 8 -> 8 / (8 + 21.33 - 8)
    assert targets[0, 1].item() == pytest.approx(8 / (16 / 0.75))
    # RoI 1 is the whole image: each class fills half and the prediction matches exactly -> 1
    assert targets[1, 1].item() == pytest.approx(1.0)
    assert targets[1, 2].item() == pytest.approx(1.0)


def two_class_image():
    """Return (gt_masks [2, 8, 8], gt_labels [2]): class 1 on the left half, class 2 on the right half."""
    masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
    masks[0, :, :4] = 1
    masks[1, :, 4:] = 1
    return masks, torch.tensor([1, 2])


def test_positive_rois_are_torchvisions_mask_rois_with_their_cropped_gt():
    masks, gt_labels = two_class_image()
    proposals = torch.tensor([[0.0, 0.0, 3.0, 8.0], [4.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]])
    matched = torch.tensor([0, 1, 0])
    labels = torch.tensor([1, 0, -1])  # one positive, one background, one ignored
    targets = [{"masks": masks, "labels": gt_labels}]
    rois = PositiveRoIs.from_samples([proposals], [matched], [labels], targets, mask_size=4)
    assert torch.equal(rois.proposals[0], proposals[:1]) and rois.matched_idxs[0].tolist() == [0]
    assert rois.labels.tolist() == [1] and rois.counts() == [1]
    assert rois.mask_targets.shape == (1, 4, 4)
    assert bool((rois.mask_targets >= 0.5).all())  # the box lies inside the class-1 half: GT everywhere
    assert rois.gt_masks[0] is masks and rois.gt_labels[0] is gt_labels


def test_target_class_strategy_on_a_hand_built_roi():
    masks, gt_labels = two_class_image()
    # The RoI is the whole image, matched to class 2 (right half: 32 of 64 pixels, all inside the RoI).
    proposals, matched = torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([1])
    rois = PositiveRoIs.from_samples(
        [proposals], [matched], [torch.tensor([2])], [{"masks": masks, "labels": gt_labels}], mask_size=4
    )
    probs = torch.zeros(1, 3, 4, 4)
    probs[0, 2, :, 3] = 0.9  # class 2 predicted on the rightmost quarter: half of its GT
    probs[0, 1] = 0.9  # class 1 everywhere: not the target class, ignored
    supervision = TargetClassTargets()(probs, rois)
    # overlap 4 cells, prediction 4, GT 8 -> 4 / (4 + 8 - 4)
    assert supervision.roi_iou.tolist() == [pytest.approx(0.5)]
    assert supervision.rows.tolist() == [0] and supervision.cols.tolist() == [2]
    assert torch.equal(supervision.values, supervision.roi_iou)


def two_roi_case():
    """Return (masks, gt_labels, proposals, rois, probs): the geometry of
    test_present_class_targets_marks_classes_inside_the_roi, one image, 4 classes. RoI 0 (class 1)
    covers only class 1's GT, RoI 1 (class 2) both; class 1 is predicted on the left half of the 4x4
    grid, class 2 on the right half."""
    masks, gt_labels = two_class_image()
    proposals = torch.tensor([[0.0, 0.0, 3.0, 8.0], [0.0, 0.0, 8.0, 8.0]])
    rois = PositiveRoIs.from_samples(
        [proposals],
        [torch.tensor([0, 1])],
        [torch.tensor([1, 2])],
        [{"masks": masks, "labels": gt_labels}],
        mask_size=4,
    )
    probs = torch.zeros(2, 4, 4, 4)
    probs[:, 1, :, :2] = 0.9
    probs[:, 2, :, 2:] = 0.9
    return masks, gt_labels, proposals, rois, probs


def test_present_classes_strategy_adds_the_present_classes_to_the_target_class():
    masks, gt_labels, proposals, rois, probs = two_roi_case()
    supervision = PresentClassesTargets()(probs, rois)
    class_targets, _ = present_class_targets(probs, proposals, masks, gt_labels)
    # RoI 0 (class 1): only class 1 present; RoI 1 (class 2): classes 1 and 2 present. Class 3 never.
    assert list(zip(supervision.rows.tolist(), supervision.cols.tolist())) == [(0, 1), (1, 1), (1, 2)]
    roi_iou = TargetClassTargets().roi_iou(probs, rois)
    assert torch.equal(supervision.roi_iou, roi_iou)
    expected = torch.stack([roi_iou[0], class_targets[1, 1], roi_iou[1]])
    assert torch.equal(supervision.values, expected)


def test_all_classes_others_zero_strategy_supervises_every_foreground_class():
    masks, gt_labels = two_class_image()
    rois = PositiveRoIs.from_samples(
        [torch.tensor([[0.0, 0.0, 8.0, 8.0]])],
        [torch.tensor([1])],
        [torch.tensor([2])],
        [{"masks": masks, "labels": gt_labels}],
        mask_size=4,
    )
    probs = torch.zeros(1, 4, 4, 4)
    probs[0, 2, :, 2:] = 0.9  # exactly the GT of class 2
    supervision = AllClassesOthersZeroTargets()(probs, rois)
    assert supervision.rows.tolist() == [0, 0, 0] and supervision.cols.tolist() == [1, 2, 3]
    assert supervision.values.tolist() == [0.0, pytest.approx(1.0), 0.0]


def test_all_classes_strategy_learns_every_class_present_ones_with_their_iou():
    """Paper Table 5 (2): every foreground class; absent classes 0, present ones their IoU (not 0)."""
    _, _, _, rois, probs = two_roi_case()
    supervision = AllClassesTargets()(probs, rois)
    assert supervision.rows.tolist() == [0, 0, 0, 1, 1, 1] and supervision.cols.tolist() == [1, 2, 3] * 2
    present = PresentClassesTargets()(probs, rois)
    present_values = dict(zip(zip(present.rows.tolist(), present.cols.tolist()), present.values.tolist()))
    assert present_values[(1, 1)] > 0  # class 1 is present in RoI 1, which belongs to class 2 ...
    entries = zip(supervision.rows.tolist(), supervision.cols.tolist(), supervision.values.tolist())
    for row, col, value in entries:  # ... so it keeps that IoU here; every absent class gets 0
        assert value == pytest.approx(present_values.get((row, col), 0.0))
    others_zero = AllClassesOthersZeroTargets()(probs, rois)
    assert others_zero.values.tolist()[3] == 0.0  # the older variant zeroed class 1 of RoI 1
