"""Exact known answers for the MaskIoU branch (msr.models.maskiou): pixel bounds and counts checked against a
per-pixel reference, IoU targets and per-class targets computed by hand, the heads' layers, init and inputs,
the training-target strategies' cache and devices, and MaskIoUBranch's arguments, prediction and loss.

The meta device stands in for an accelerator: a tensor made without the inputs' device lands on the CPU,
which a meta input tells apart.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign

from msr.models.maskiou import (
    AllClassesOthersZeroTargets,
    AllClassesTargets,
    AllMasksMaskIoUHead,
    Concat28MaskIoUHead,
    ConcatMaskIoUHead,
    MaskIoUHead,
    MaskIoULoss,
    MaskIoUTargets,
    MaskOnlyMaskIoUHead,
    MultiplyMaskIoUHead,
    PositiveRoIs,
    PresentClassesTargets,
    TargetClassTargets,
    box_pixel_bounds,
    input_design,
    mask_area_ratios,
    maskiou_targets,
    pixels_inside_boxes,
    pool_masks,
    present_class_targets,
    target_variant,
)
from msr.models.maskiou.branch import MaskIoUBranch, MaskIoUInputs, pool_for

META = torch.device("meta")


# --- box_pixel_bounds / pixels_inside_boxes -----------------------------------------------------------


def reference_inside(box: list[float], height: int, width: int) -> torch.Tensor:
    """Return [H, W] bool: the pixels whose centre (c + 0.5, r + 0.5) lies in the half-open box, one by one
    (an independent reference of box_pixel_bounds)."""
    x1, y1, x2, y2 = box
    inside = torch.zeros(height, width, dtype=torch.bool)
    for r in range(height):
        for c in range(width):
            inside[r, c] = x1 <= c + 0.5 < x2 and y1 <= r + 0.5 < y2
    return inside


@pytest.mark.parametrize(
    "box,bounds",
    [
        ([-5.0, -5.0, 0.4, 0.4], [0, 0, 0, 0]),  # above and left of the image: empty at the origin
        ([10.0, 9.0, 20.0, 30.0], [5, 5, 6, 6]),  # below and right of it: empty at the far corner
        ([0.5, 0.5, 1.5, 1.5], [0, 1, 0, 1]),  # edges on pixel centres: the first one in, the last out
        ([2.0, 1.2, 2.0, 4.0], [1, 4, 2, 2]),  # zero width
        ([4.2, 3.7, 2.0, 1.0], [4, 4, 4, 4]),  # x2 < x1 and y2 < y1: empty, never negative
        ([1.49, 0.51, 5.51, 4.49], [1, 4, 1, 6]),  # fractional, the right edge past the last centre
        ([-3.0, 2.0, 9.0, 7.0], [2, 5, 0, 6]),  # wider and taller than the image: clipped on both sides
    ],
)
def test_box_pixel_bounds_known_answers_on_edges_outside_and_empty(box, bounds):
    got = box_pixel_bounds(torch.tensor([box]), 5, 6)
    assert got.dtype == torch.int64
    assert got.tolist() == [bounds]
    row0, row1, col0, col1 = bounds
    expected = torch.zeros(5, 6, dtype=torch.bool)
    expected[row0:row1, col0:col1] = True
    assert torch.equal(expected, reference_inside(box, 5, 6))


def test_pixels_inside_boxes_equals_a_per_pixel_count():
    gen = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 5, 6, generator=gen) > 0.4).to(torch.uint8)
    coords = [-1.5, 0.0, 0.5, 0.6, 2.25, 3.5, 5.5, 6.5, 8.0]
    boxes, idxs, expected = [], [], []
    for i, (x1, x2) in enumerate((a, b) for a in coords for b in coords):
        y1, y2 = coords[i % len(coords)], coords[(3 * i + 4) % len(coords)]
        box = [x1, y1, x2, y2]
        boxes.append(box)
        idxs.append(i % 3)
        expected.append(float((reference_inside(box, 5, 6) & (masks[i % 3] > 0)).sum()))
    got = pixels_inside_boxes(masks, torch.tensor(boxes), torch.tensor(idxs))
    assert got.dtype == torch.float32
    assert got.tolist() == expected


def test_pixels_inside_boxes_past_the_right_and_bottom_edges_counts_the_image_part():
    masks = torch.ones(1, 4, 5)
    boxes = torch.tensor([[3.0, 2.0, 50.0, 40.0], [-9.0, -9.0, 50.0, 40.0], [7.0, 0.0, 9.0, 4.0]])
    # columns 3, 4 x rows 2, 3; the whole image; a box right of the image
    assert pixels_inside_boxes(masks, boxes, torch.tensor([0, 0, 0])).tolist() == [4.0, 20.0, 0.0]


def test_pixels_inside_boxes_with_no_masks_is_zero_for_every_box():
    # torchvision matches every proposal of a picture without instances to index 0.
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 2.0, 2.0]])
    zeros = torch.zeros(2, dtype=torch.long)
    assert pixels_inside_boxes(torch.zeros(0, 4, 4), boxes, zeros).tolist() == [0.0, 0.0]
    assert mask_area_ratios(torch.zeros(0, 4, 4), boxes, zeros).tolist() == [0.0, 0.0]


def test_pixels_inside_boxes_is_float32_whatever_the_default_dtype():
    masks, no_boxes, no_idxs = torch.ones(1, 3, 3), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        empty = pixels_inside_boxes(masks, no_boxes, no_idxs)
    finally:
        torch.set_default_dtype(previous)
    assert empty.dtype == torch.float32 and empty.shape == (0,)


def test_pixels_inside_boxes_stays_on_the_inputs_device():
    masks, idxs = torch.zeros(2, 4, 4, device=META), torch.zeros(3, dtype=torch.long, device=META)
    got = pixels_inside_boxes(masks, torch.zeros(3, 4, device=META), idxs)
    assert got.device == META and got.shape == (3,) and got.dtype == torch.float32
    empty = pixels_inside_boxes(masks, torch.zeros(0, 4, device=META), idxs[:0])
    assert empty.device == META and empty.shape == (0,)


def test_pixels_inside_boxes_is_exact_beyond_float32_integers():
    # 4097 x 4097 > 2**24 foreground pixels: a float32 summed-area table would round its corner entries
    # (16785409 -> 16785408) and the last row, a difference of two of them, would lose a pixel.
    side = 4097
    masks = torch.ones(1, side, side, dtype=torch.bool)
    last_row = torch.tensor([[0.0, side - 1.0, float(side), float(side)]])
    assert pixels_inside_boxes(masks, last_row, torch.tensor([0])).tolist() == [float(side)]


# --- mask_area_ratios / maskiou_targets ---------------------------------------------------------------


def test_mask_area_ratio_of_a_one_pixel_instance_is_one_or_zero():
    masks = torch.zeros(1, 4, 4, dtype=torch.uint8)
    masks[0, 1, 2] = 1
    boxes = torch.tensor([[2.0, 1.0, 3.0, 2.0], [0.0, 0.0, 2.0, 4.0]])
    assert mask_area_ratios(masks, boxes, torch.tensor([0, 0])).tolist() == [1.0, 0.0]


def test_maskiou_probability_equal_to_the_threshold_is_background():
    gt = torch.ones(1, 1, 2)
    probs = torch.tensor([[[0.5, 0.75]]])
    # prediction: the 0.75 pixel only -> 1 / (1 + 2 - 1)
    assert maskiou_targets(probs, gt, torch.tensor([1.0])).tolist() == [0.5]
    assert maskiou_targets(probs, gt, torch.tensor([1.0]), threshold=0.75).tolist() == [0.0]


def test_maskiou_gt_value_of_one_half_is_background():
    gt = torch.tensor([[[0.5, 1.0]]])
    probs = torch.full((1, 1, 2), 0.9)
    # GT: the 1.0 pixel only -> overlap 1, prediction 2, GT 1 -> 1 / 2
    assert maskiou_targets(probs, gt, torch.tensor([1.0])).tolist() == [0.5]


def test_maskiou_one_pixel_match_is_one_and_union_below_one_is_not_inflated():
    gt = torch.zeros(2, 3, 3)
    gt[0, 1, 1] = 1
    probs = torch.zeros(2, 3, 3)
    probs[0, 1, 1] = 0.9
    # RoI 1: nothing predicted, no GT: union 0 -> clamped to 1 -> IoU 0
    assert maskiou_targets(probs, gt, torch.tensor([1.0, 0.0])).tolist() == [1.0, 0.0]


def test_maskiou_targets_are_float32_for_float64_area_ratios():
    gt = torch.zeros(1, 4, 4)
    gt[0, :2] = 1
    probs = torch.zeros(1, 4, 4)
    probs[0] = 0.8
    ious = maskiou_targets(probs, gt, torch.tensor([0.25], dtype=torch.float64))
    # overlap 8, prediction 16, whole GT 8 / 0.25 = 32 -> 8 / (16 + 32 - 8)
    assert ious.dtype == torch.float32
    assert ious.tolist() == [0.20000000298023224]  # float32(0.2)


# --- present_class_targets ----------------------------------------------------------------------------


def test_present_class_targets_several_classes_rois_and_absent_classes_by_hand():
    # 8x8 picture: class 1 has two instances (rows 0-1 and rows 6-7), class 3 one (columns 6-7);
    # classes 2 and 4 have no instance. RoI 0 is the picture, RoI 1 its top-left 4x4 quarter; M = 4.
    masks = torch.zeros(3, 8, 8, dtype=torch.uint8)
    masks[0, 0:2] = 1
    masks[1, :, 6:] = 1
    masks[2, 6:] = 1
    labels = torch.tensor([1, 3, 1])
    proposals = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 4.0, 4.0]])
    # RoIAlign crops (aligned=False) > 0.5: RoI 0, class 1: grid rows 0 and 3 (8 cells, the union of both
    # instances), class 3: grid column 3 (4 cells). RoI 1, class 1: grid row 0 (row 1 samples y = 1.5,
    # exactly 0.5: background), 4 cells; the box holds 8 of the class's 32 pixels (ratio 1/4); class 3 absent.
    probs = torch.zeros(2, 5, 4, 4)
    probs[0, 1, 0] = 0.9  # 4 of the 8 GT cells -> 4 / 8
    probs[0, 3, :, 3] = 0.9  # the GT exactly -> 1
    probs[1, 1, :2] = 0.9  # 8 cells, 4 on the GT, whole GT 4 / 0.25 = 16 -> 4 / (8 + 16 - 4)
    probs[1, 3] = 0.9  # class 3 predicted where it is absent: target 0, not supervised
    probs[:, 2] = 0.9  # classes without any instance
    probs[:, 4] = 0.9
    targets, present = present_class_targets(probs, proposals, masks, labels)
    assert targets.dtype == torch.float32
    assert torch.equal(targets, torch.tensor([[0.0, 0.5, 0.0, 1.0, 0.0], [0.0, 0.2, 0.0, 0.0, 0.0]]))
    assert present.tolist() == [[False, True, False, True, False], [False, True, False, False, False]]


def test_a_crop_cell_of_exactly_one_half_is_background_for_every_target():
    """A ground-truth cell of exactly 0.5 is background for the present-class targets as for the target
    class's IoU: the same RoI, class and prediction get the same target, and the class is not present."""
    masks = torch.zeros(1, 8, 8, dtype=torch.uint8)
    masks[0, :, 0] = 1  # column 0 only: the RoI's grid column 0 samples x = 0.5, halfway to column 1
    probs = torch.zeros(1, 2, 4, 4)
    probs[0, 1, :, 0] = 0.9
    box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    targets, present = present_class_targets(probs, box, masks, torch.tensor([1]))
    assert present.tolist() == [[False, False]]
    assert targets.tolist() == [[0.0, 0.0]]
    rois = PositiveRoIs.from_samples(
        [box], [torch.tensor([0])], [torch.tensor([1])], [{"masks": masks, "labels": torch.tensor([1])}], 4
    )
    assert bool((rois.mask_targets[0, :, 0] == 0.5).all())  # the tie this test is about
    assert TargetClassTargets().roi_iou(probs, rois).tolist() == [0.0]


def test_present_class_targets_of_one_roi_one_instance_bfloat16_probs_and_a_custom_threshold():
    masks = torch.zeros(1, 8, 8, dtype=torch.uint8)
    masks[0, :, :4] = 1  # class 2 on the left half: grid columns 0-1 of the picture's 4x4 grid
    probs = torch.zeros(1, 3, 4, 4, dtype=torch.bfloat16)
    probs[0, 2, :, 0] = 0.4  # foreground at threshold 0.3 only
    probs[0, 2, :, 1] = 0.9
    args = (probs, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), masks, torch.tensor([2]))
    targets, present = present_class_targets(*args, threshold=0.3)
    assert targets.dtype == torch.float32
    assert targets.tolist() == [[0.0, 0.0, 1.0]] and present.tolist() == [[False, False, True]]
    targets, _ = present_class_targets(*args)  # threshold 0.5: 4 of the 8 cells
    assert targets.tolist() == [[0.0, 0.0, 0.5]]


def test_present_class_targets_without_rois_or_without_instances_are_empty():
    masks = torch.ones(1, 8, 8, dtype=torch.uint8)
    targets, present = present_class_targets(
        torch.zeros(0, 3, 4, 4), torch.zeros(0, 4), masks, torch.tensor([1])
    )
    assert targets.shape == present.shape == (0, 3)
    probs = torch.full((2, 3, 4, 4), 0.9)
    proposals = torch.tensor([[0.0, 0.0, 8.0, 8.0], [1.0, 1.0, 5.0, 5.0]])
    targets, present = present_class_targets(
        probs, proposals, torch.zeros(0, 8, 8), torch.zeros(0, dtype=torch.long)
    )
    assert torch.equal(targets, torch.zeros(2, 3)) and not present.any()


def test_present_class_targets_stay_on_the_inputs_device():
    targets, present = present_class_targets(
        torch.zeros(0, 3, 4, 4, device=META),
        torch.zeros(0, 4, device=META),
        torch.zeros(0, 8, 8, device=META),
        torch.zeros(0, dtype=torch.long, device=META),
    )
    assert targets.device == present.device == META
    assert targets.dtype == torch.float32 and present.dtype == torch.bool


# --- heads -------------------------------------------------------------------------------------------


def test_pool_masks_pools_every_channel_whatever_the_number_of_classes():
    masks = torch.arange(32, dtype=torch.float32).reshape(1, 2, 4, 4)  # 2 channels pooled to 2x2
    expected = torch.tensor([[[[5.0, 7.0], [13.0, 15.0]], [[21.0, 23.0], [29.0, 31.0]]]])
    assert torch.equal(pool_masks(masks, 2), expected)
    assert pool_masks(masks, 4) is masks


def test_pool_masks_error_names_the_mask_size():
    message = "mask size 30 is not a multiple of RoI feature size 14"
    with pytest.raises(ValueError, match=message):
        pool_masks(torch.zeros(1, 2, 30, 30), 14)


def test_unknown_design_and_target_errors_list_every_choice():
    designs = "concat, multiply, all_masks, concat_28, mask_only"
    with pytest.raises(ValueError, match=re.escape(f"design 'x'; choose one of {designs}")):
        input_design("x")
    targets = "target_class, all_classes, present_classes, all_classes_others_zero"
    with pytest.raises(ValueError, match=re.escape(f"target 'x'; choose one of {targets}")):
        target_variant("x")


def test_a_single_class_head_has_one_output_and_no_class_is_refused():
    head = ConcatMaskIoUHead(1, in_channels=2, conv_channels=2, fc_dim=4)
    assert head.num_classes == 1 and head.predictor.out_features == 1
    with pytest.raises(ValueError, match=re.escape("num_classes must be >= 1, got 0")):
        ConcatMaskIoUHead(0)


def test_a_head_may_have_only_its_stride_2_convs():
    head = ConcatMaskIoUHead(2, in_channels=2, conv_channels=3, num_convs=1, fc_dim=4, num_fcs=1)
    assert [m.stride for m in head.convs if isinstance(m, nn.Conv2d)] == [(2, 2)]
    head28 = Concat28MaskIoUHead(2, in_channels=2, conv_channels=3, num_convs=2, fc_dim=4, num_fcs=1)
    assert [m.stride for m in head28.convs if isinstance(m, nn.Conv2d)] == [(2, 2), (2, 2)]
    out = head28(torch.zeros(1, 2, 28, 28), torch.zeros(1, 2, 28, 28), torch.tensor([1]))
    assert out.shape == (1, 2)


def test_head_relus_work_in_place():
    head = ConcatMaskIoUHead(2, in_channels=2, conv_channels=2, fc_dim=4)
    relus = [m for m in head.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 6 and all(m.inplace is True for m in relus)


def test_conv_init_is_kaiming_normal_fan_out():
    # One input channel, 64 outputs: fan_out 64*9 = 576 gives std sqrt(2/576) = 0.059 (fan_in 9: 0.47).
    torch.manual_seed(0)
    head = MaskOnlyMaskIoUHead(2, conv_channels=64, num_convs=1, fc_dim=4, num_fcs=1)
    weight = head.convs[0].weight.detach()
    assert weight.shape == (64, 1, 3, 3)
    expected_std = (2 / 576) ** 0.5
    assert abs(float(weight.std()) - expected_std) < 0.15 * expected_std
    assert float(head.convs[0].bias.detach().abs().max()) == 0.0


def mask_probs_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (features [2, 2, 14, 14], mask probabilities [2, 3, 28, 28], labels [2]), all float32."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(2, 2, 14, 14, generator=gen) + 0.5
    probs = torch.rand(2, 3, 28, 28, generator=gen)
    return feats, probs, torch.tensor([2, 1])


def test_multiply_input_is_features_times_the_pooled_target_mask():
    feats, probs, labels = mask_probs_case()
    head = MultiplyMaskIoUHead(3, in_channels=2, conv_channels=2, fc_dim=4)
    pooled = torch.stack([pool_masks(probs[i, labels[i]][None, None], 14)[0] for i in range(2)])
    assert torch.equal(head.build_input(feats, probs, labels), feats * pooled)


def test_all_masks_input_is_features_then_every_pooled_class_mask():
    feats, probs, labels = mask_probs_case()
    head = AllMasksMaskIoUHead(3, in_channels=2, conv_channels=2, fc_dim=4)
    x = head.build_input(feats, probs, labels)
    assert x.shape == (2, 5, 14, 14)
    assert torch.equal(x[:, :2], feats)
    assert torch.equal(x[1, 4, 3, 5], probs[1, 2, 6:8, 10:12].max())


def test_concat_28_input_is_features_then_the_unpooled_target_mask():
    gen = torch.Generator().manual_seed(1)
    feats, probs = torch.rand(2, 2, 28, 28, generator=gen), torch.rand(2, 3, 28, 28, generator=gen)
    head = Concat28MaskIoUHead(3, in_channels=2, conv_channels=2, fc_dim=4)
    x = head.build_input(feats, probs, torch.tensor([2, 1]))
    assert torch.equal(x, torch.cat([feats, torch.stack([probs[0, 2], probs[1, 1]])[:, None]], dim=1))


@pytest.mark.parametrize("design", [ConcatMaskIoUHead, MultiplyMaskIoUHead, AllMasksMaskIoUHead])
def test_input_has_the_features_dtype_when_the_masks_are_float32(design):
    feats, probs, labels = mask_probs_case()
    head = design(3, in_channels=2, conv_channels=2, fc_dim=4)
    x = head.build_input(feats.to(torch.bfloat16), probs, labels)
    assert x.dtype == torch.bfloat16
    # max-pooling commutes with rounding to bfloat16: the same as building it from bfloat16 masks
    assert torch.equal(x, head.build_input(feats.to(torch.bfloat16), probs.to(torch.bfloat16), labels))


def test_a_design_without_build_input_says_so():
    class ChannelsOnly(MaskIoUHead):
        def input_channels(self, in_channels: int, num_classes: int) -> int:
            return 1

    head = ChannelsOnly(2, conv_channels=2, fc_dim=4)
    with pytest.raises(NotImplementedError, match="^ChannelsOnly must define build_input$"):
        head.build_input(torch.zeros(1, 1, 14, 14), torch.zeros(1, 2, 28, 28), torch.tensor([1]))


# --- training-target strategies ------------------------------------------------------------------------


def two_class_rois(mask_size: int = 4) -> PositiveRoIs:
    """Return the positive RoIs of an 8x8 picture, class 1 on the left half and class 2 on the right: RoI 0
    (class 1) is the left half's first 3 columns, RoI 1 (class 2) the whole picture."""
    masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
    masks[0, :, :4] = 1
    masks[1, :, 4:] = 1
    return PositiveRoIs.from_samples(
        [torch.tensor([[0.0, 0.0, 3.0, 8.0], [0.0, 0.0, 8.0, 8.0]])],
        [torch.tensor([0, 1])],
        [torch.tensor([1, 2])],
        [{"masks": masks, "labels": torch.tensor([1, 2])}],
        mask_size=mask_size,
    )


def test_strategy_repr_names_the_strategy_and_threshold():
    assert repr(TargetClassTargets(0.3)) == "TargetClassTargets(binarize_threshold=0.3)"
    assert repr(AllClassesTargets()) == "AllClassesTargets(binarize_threshold=0.5)"


def test_the_base_strategy_has_no_entries():
    rois = two_class_rois()
    with pytest.raises(NotImplementedError, match="^MaskIoUTargets must define entries$"):
        MaskIoUTargets().entries(torch.zeros(2, 3, 4, 4), rois, torch.zeros(2))


def test_target_class_iou_uses_the_strategys_binarize_threshold():
    rois = two_class_rois()
    probs = torch.zeros(2, 3, 4, 4)
    # RoI 0 lies inside class 1: its whole grid is GT, with 24 of the 32 pixels -> 16 / (16 / 0.75)
    probs[0, 1] = 0.4
    probs[1, 2, :, 2:] = 0.4  # RoI 1: class 2's right half of the grid, all of it -> 1
    assert TargetClassTargets(0.3).roi_iou(probs, rois).tolist() == [pytest.approx(0.75), 1.0]
    assert TargetClassTargets().roi_iou(probs, rois).tolist() == [0.0, 0.0]


def test_present_class_iou_uses_the_strategys_binarize_threshold():
    rois = two_class_rois()
    probs = torch.zeros(2, 3, 4, 4)
    probs[1, 1, :, :2] = 0.4  # RoI 1: class 1 (present, not its target) exactly on its GT cells
    values = {thr: PresentClassesTargets(thr)(probs, rois) for thr in (0.3, 0.5)}
    assert list(zip(values[0.3].rows.tolist(), values[0.3].cols.tolist())) == [(0, 1), (1, 1), (1, 2)]
    assert values[0.3].values[1].item() == 1.0
    assert values[0.5].values[1].item() == 0.0


def test_derived_values_are_computed_once_per_probabilities_tensor_and_threshold():
    rois = two_class_rois()
    probs = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    first = TargetClassTargets().roi_iou(probs, rois)
    assert PresentClassesTargets().roi_iou(probs, rois) is first  # shared by the heads of a pass
    assert TargetClassTargets(0.3).roi_iou(probs, rois) is not first  # another threshold
    again = probs.clone()  # equal values, another tensor: computed anew, then cached for it
    second = TargetClassTargets().roi_iou(again, rois)
    assert second is not first and torch.equal(second, first)
    assert TargetClassTargets().roi_iou(again, rois) is second
    strategy = PresentClassesTargets()
    targets = strategy.class_targets(probs, rois, first)
    assert strategy.class_targets(probs, rois, first) is targets
    assert strategy.class_targets(again, rois, first) is not targets


def test_derived_calls_compute_once():
    rois, probs, calls = two_class_rois(), torch.zeros(2, 3, 4, 4), []
    strategy = TargetClassTargets()
    for _ in range(3):
        assert strategy.derived("x", probs, rois, lambda: calls.append(1) or len(calls)) == 1
    assert strategy.derived("x", torch.zeros(2, 3, 4, 4), rois, lambda: calls.append(1) or len(calls)) == 2


def meta_rois(labels: list[int]) -> PositiveRoIs:
    """Return PositiveRoIs on the meta device carrying only the RoIs' classes (all that entries read)."""
    return PositiveRoIs([], [], torch.tensor(labels, device=META), [], [], torch.zeros(len(labels), 4, 4))


def test_target_class_entries_stay_on_the_labels_device():
    rows, cols, values = TargetClassTargets().entries(
        torch.zeros(2, 3, 4, 4, device=META), meta_rois([1, 2]), torch.zeros(2, device=META)
    )
    assert rows.device == cols.device == values.device == META and rows.shape == (2,)


def test_all_classes_others_zero_entries_stay_on_the_labels_device():
    rows, cols, values = AllClassesOthersZeroTargets().entries(
        torch.zeros(2, 3, 4, 4, device=META), meta_rois([1, 2]), torch.zeros(2, device=META)
    )
    assert rows.device == cols.device == values.device == META and rows.shape == cols.shape == (4,)


def test_all_classes_entries_stay_on_the_class_targets_device():
    class GivenClassTargets(AllClassesTargets):
        def class_targets(self, mask_probs, rois, roi_iou):
            return torch.zeros(2, 3, device=META), torch.zeros(2, 3, dtype=torch.bool, device=META)

    rows, cols, values = GivenClassTargets().entries(
        torch.zeros(2, 3, 4, 4, device=META), meta_rois([1, 2]), torch.zeros(2, device=META)
    )
    assert rows.device == cols.device == values.device == META and rows.shape == cols.shape == (4,)


# --- MaskIoUBranch -----------------------------------------------------------------------------------


def tiny_head(design: type[MaskIoUHead] = ConcatMaskIoUHead) -> MaskIoUHead:
    return design(3, in_channels=2, conv_channels=2, num_convs=2, fc_dim=4, num_fcs=1)


def branch_inputs(with_positives: bool = True) -> MaskIoUInputs:
    """Return the inputs of two RoIs of a 16x16 picture (class 1 left, class 2 right), grad-tracking."""
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(2, 16, 16, dtype=torch.uint8)
    masks[0, :, :8] = 1
    masks[1, :, 8:] = 1
    boxes = torch.tensor([[1.0, 1.0, 9.0, 9.0], [6.0, 0.0, 14.0, 12.0]])
    labels = torch.tensor([1, 2])
    positives = PositiveRoIs.from_samples(
        [boxes], [torch.tensor([0, 1])], [labels], [{"masks": masks, "labels": labels}], mask_size=28
    )
    return MaskIoUInputs(
        features={"0": torch.rand(1, 2, 16, 16, generator=gen)},
        image_shapes=[(16, 16)],
        boxes=[boxes],
        roi_features=torch.rand(2, 2, 14, 14, generator=gen).requires_grad_(),
        mask_probs=torch.rand(2, 3, 28, 28, generator=gen).requires_grad_(),
        labels=labels,
        positives=positives if with_positives else None,
    )


def mask_pool(size: int = 14) -> MultiScaleRoIAlign:
    return MultiScaleRoIAlign(["0"], size, sampling_ratio=2)


def test_branch_defaults_are_target_class_default_loss_and_no_gradient_stop():
    head = tiny_head()
    branch = MaskIoUBranch(head, mask_pool())
    assert branch.head is head and branch.roi_pool is None
    assert type(branch.target) is TargetClassTargets and branch.target.binarize_threshold == 0.5
    assert type(branch.loss) is MaskIoULoss and branch.loss.threshold == 0.0
    assert branch.detach is False


def test_branch_keeps_the_given_target_loss_and_gradient_stop():
    target, loss = PresentClassesTargets(0.3), MaskIoULoss(threshold=0.2)
    branch = MaskIoUBranch(tiny_head(), None, target, loss, 1)
    assert branch.target is target and branch.loss is loss and branch.detach is True
    assert branch.roi_pool is None


def test_a_28x28_head_gets_its_own_roi_align_like_the_mask_branchs():
    branch = MaskIoUBranch(tiny_head(Concat28MaskIoUHead), mask_pool())
    pool = branch.roi_pool
    assert isinstance(pool, MultiScaleRoIAlign)
    assert tuple(pool.output_size) == (28, 28)
    assert pool.featmap_names == ["0"] and pool.sampling_ratio == 2
    assert pool_for(None, 28) is None and pool_for(mask_pool(), 14) is None


def test_branch_predict_is_the_heads_output_on_its_own_pooled_features():
    inputs = branch_inputs()
    head = tiny_head(Concat28MaskIoUHead)
    got = MaskIoUBranch(head, mask_pool()).predict(inputs)
    feats = mask_pool(28)(inputs.features, inputs.boxes, inputs.image_shapes)
    assert torch.equal(got, head(feats, inputs.mask_probs, inputs.labels))
    head14 = tiny_head()
    got14 = MaskIoUBranch(head14, mask_pool()).predict(inputs)
    assert torch.equal(got14, head14(inputs.roi_features, inputs.mask_probs, inputs.labels))


def test_branch_detach_stops_the_gradient_at_the_heads_inputs():
    inputs, head = branch_inputs(), tiny_head()
    wanted = [inputs.roi_features, inputs.mask_probs]
    kept = torch.autograd.grad(MaskIoUBranch(head, None).predict(inputs).sum(), wanted, allow_unused=True)
    assert all(g is not None for g in kept)
    stopped = torch.autograd.grad(
        MaskIoUBranch(head, None, detach=True).predict(inputs).sum(), wanted, allow_unused=True
    )
    assert stopped == (None, None)


def test_branch_training_loss_is_its_loss_of_its_targets_supervision():
    inputs, head = branch_inputs(), tiny_head()
    target, loss = TargetClassTargets(0.3), MaskIoULoss(loss_weight=3.0)
    got = MaskIoUBranch(head, None, target, loss).training_loss(inputs)
    supervision = TargetClassTargets(0.3)(inputs.mask_probs, inputs.positives)
    pred = head(inputs.roi_features, inputs.mask_probs, inputs.labels)
    expected = MaskIoULoss(loss_weight=3.0)(pred, supervision)
    assert float(expected.detach()) > 0 and torch.equal(got, expected)


def test_branch_training_loss_without_ground_truth_is_a_clear_error():
    message = "the MaskIoU loss needs the training RoIs' ground truth (inputs.positives)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MaskIoUBranch(tiny_head(), None).training_loss(branch_inputs(with_positives=False))
