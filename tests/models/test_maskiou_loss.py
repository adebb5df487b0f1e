import pytest
import torch

from msr.models import (
    AllClassesOthersZeroTargets,
    MaskIoULoss,
    MaskIoUSupervision,
    PositiveRoIs,
    PresentClassesTargets,
    TargetClassTargets,
    target_variant,
)


def rois_with_labels(labels: torch.Tensor) -> PositiveRoIs:
    """Return PositiveRoIs that carry only the RoIs' classes (all that two strategies' entries read)."""
    return PositiveRoIs([], [], labels, [], [], torch.zeros(len(labels), 28, 28))


def supervise(strategy, pred, roi_iou, labels) -> MaskIoUSupervision:
    """Return the strategy's supervision for RoIs of known target-class IoU (mask probabilities unused)."""
    mask_probs = torch.zeros(*pred.shape, 28, 28)
    rows, cols, values = strategy.entries(mask_probs, rois_with_labels(labels), roi_iou)
    return MaskIoUSupervision(roi_iou, rows, cols, values)


def test_l2_on_target_class_mean_over_positive_targets():
    pred = torch.tensor([[0.0, 0.9, 0.1], [0.0, 0.2, 0.6], [0.0, 0.5, 0.5]])
    targets = torch.tensor([0.5, 0.8, 0.0])  # third RoI has target 0: not trained on (tau = 0)
    labels = torch.tensor([1, 2, 1])
    supervision = supervise(TargetClassTargets(), pred, targets, labels)
    loss = MaskIoULoss()(pred, supervision)
    expected = (0.5 * (0.9 - 0.5) ** 2 + 0.5 * (0.6 - 0.8) ** 2) / 2
    assert loss.item() == pytest.approx(expected)
    assert MaskIoULoss(loss_weight=2.0)(pred, supervision).item() == pytest.approx(2 * expected)


def test_threshold_tau_drops_low_iou_rois_and_empty_selection_is_zero_with_grad():
    pred = torch.tensor([[0.0, 0.9], [0.0, 0.2]], requires_grad=True)
    targets = torch.tensor([0.3, 0.8])
    labels = torch.tensor([1, 1])
    supervision = supervise(TargetClassTargets(), pred, targets, labels)
    loss = MaskIoULoss(threshold=0.5)(pred, supervision)
    assert loss.item() == pytest.approx(0.5 * (0.2 - 0.8) ** 2)
    empty = MaskIoULoss(threshold=0.9)(pred, supervision)
    assert empty.item() == 0.0
    empty.backward()
    assert pred.grad is not None


def test_positives_normalizer_divides_by_every_positive_roi_and_agrees_when_all_are_kept():
    pred = torch.tensor([[0.0, 0.9], [0.0, 0.2], [0.0, 0.4]])
    ious, labels = torch.tensor([0.3, 0.8, 0.6]), torch.tensor([1, 1, 1])
    supervision = supervise(TargetClassTargets(), pred, ious, labels)
    kept_sum = 0.5 * (0.2 - 0.8) ** 2  # only the RoI of IoU 0.8 passes tau = 0.7
    assert MaskIoULoss(threshold=0.7)(pred, supervision).item() == pytest.approx(kept_sum)
    positives = MaskIoULoss(threshold=0.7, normalizer="positives")(pred, supervision)
    assert positives.item() == pytest.approx(kept_sum / 3)
    every = [MaskIoULoss(normalizer=n)(pred, supervision).item() for n in ("kept", "positives")]
    assert every[0] == every[1]  # tau = 0 and every IoU > 0: the same loss, bit for bit
    with pytest.raises(ValueError, match="normalizer must be one of kept, positives, got 'all'"):
        MaskIoULoss(normalizer="all")


def test_all_classes_others_zero_supervises_other_foreground_classes_with_zero():
    pred = torch.tensor([[0.7, 0.5, 0.3]])
    supervision = supervise(AllClassesOthersZeroTargets(), pred, torch.tensor([0.5]), torch.tensor([1]))
    loss = MaskIoULoss()(pred, supervision)
    # background column ignored; class 1 hits its target; class 2 pulled to 0
    assert loss.item() == pytest.approx(0.5 * 0.3**2)
    assert supervision.cols.tolist() == [1, 2] and supervision.values.tolist() == [0.5, 0.0]


def test_present_classes_uses_only_present_entries():
    # RoI 0 of class 1 (IoU 0.5); class 2 is present with IoU 0.1, class 3 absent. Built by
    # PresentClassesTargets in test_maskiou_targets.py; here the loss alone.
    pred = torch.tensor([[0.0, 0.5, 0.3, 0.9]])
    supervision = MaskIoUSupervision(
        roi_iou=torch.tensor([0.5]),
        rows=torch.tensor([0, 0]),
        cols=torch.tensor([1, 2]),
        values=torch.tensor([0.5, 0.1]),
    )
    assert MaskIoULoss()(pred, supervision).item() == pytest.approx(0.5 * 0.2**2)


def test_target_class_loss_is_bit_identical_to_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 4, generator=gen)
    roi_iou = torch.rand(6, generator=gen)
    labels = torch.tensor([1, 3, 2, 2, 1, 3])
    loss = MaskIoULoss(threshold=0.3)(pred, supervise(TargetClassTargets(), pred, roi_iou, labels))
    keep = roi_iou > 0.3
    err = pred[keep][torch.arange(int(keep.sum())), labels[keep]] - roi_iou[keep]
    assert torch.equal(loss, 1.0 * (0.5 * err**2).sum() / int(keep.sum()))


def test_loss_is_float32_under_low_precision_predictions():
    pred = torch.tensor([[0.0, 0.3]], dtype=torch.bfloat16, requires_grad=True)
    supervision = supervise(TargetClassTargets(), pred, torch.tensor([0.7001]), torch.tensor([1]))
    loss = MaskIoULoss()(pred, supervision)
    assert loss.dtype == torch.float32
    # 0.7001 is not a bfloat16 number: the target was not rounded to the prediction's dtype.
    assert loss.item() == pytest.approx(0.5 * (float(pred[0, 1].detach()) - 0.7001) ** 2, rel=1e-6)
    loss.backward()
    assert pred.grad.dtype == torch.bfloat16


def test_the_loss_has_no_parameters_or_buffers():
    assert not MaskIoULoss().state_dict()


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown MaskIoU training target 'all'"):
        target_variant("all")


def test_every_strategy_takes_the_binarize_threshold():
    for strategy in (TargetClassTargets, AllClassesOthersZeroTargets, PresentClassesTargets):
        assert strategy(binarize_threshold=0.3).binarize_threshold == 0.3
