import pytest
import torch

from msr.models import maskiou_loss


def test_l2_on_target_class_mean_over_positive_targets():
    pred = torch.tensor([[0.0, 0.9, 0.1], [0.0, 0.2, 0.6], [0.0, 0.5, 0.5]])
    targets = torch.tensor([0.5, 0.8, 0.0])  # third RoI has target 0: not trained on (tau = 0)
    labels = torch.tensor([1, 2, 1])
    loss = maskiou_loss(pred, targets, labels)
    expected = (0.5 * (0.9 - 0.5) ** 2 + 0.5 * (0.6 - 0.8) ** 2) / 2
    assert loss.item() == pytest.approx(expected)
    assert maskiou_loss(pred, targets, labels, loss_weight=2.0).item() == pytest.approx(2 * expected)


def test_threshold_tau_drops_low_iou_rois_and_empty_selection_is_zero_with_grad():
    pred = torch.tensor([[0.0, 0.9], [0.0, 0.2]], requires_grad=True)
    targets = torch.tensor([0.3, 0.8])
    labels = torch.tensor([1, 1])
    loss = maskiou_loss(pred, targets, labels, threshold=0.5)
    assert loss.item() == pytest.approx(0.5 * (0.2 - 0.8) ** 2)
    empty = maskiou_loss(pred, targets, labels, threshold=0.9)
    assert empty.item() == 0.0
    empty.backward()
    assert pred.grad is not None


def test_all_classes_zero_supervises_other_foreground_classes_with_zero():
    pred = torch.tensor([[0.7, 0.5, 0.3]])
    loss = maskiou_loss(pred, torch.tensor([0.5]), torch.tensor([1]), variant="all_classes_zero")
    # background column ignored; class 1 hits its target; class 2 pulled to 0
    assert loss.item() == pytest.approx(0.5 * 0.3**2)


def test_present_classes_uses_only_present_entries():
    pred = torch.tensor([[0.0, 0.5, 0.3, 0.9]])
    class_targets = torch.tensor([[0.0, 0.0, 0.1, 0.4]])
    present = torch.tensor([[False, False, True, False]])
    loss = maskiou_loss(
        pred,
        torch.tensor([0.5]),
        torch.tensor([1]),
        variant="present_classes",
        class_targets=class_targets,
        class_present=present,
    )
    assert loss.item() == pytest.approx(0.5 * 0.2**2)


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown MaskIoU training target 'all'"):
        maskiou_loss(torch.zeros(1, 2), torch.ones(1), torch.ones(1, dtype=torch.long), variant="all")
