"""The sparse RoIAlign gives torchvision's pooled features and gradients, and the detector's losses."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from support.tiny_nets import tiny_model
from torchvision.ops import MultiScaleRoIAlign

from msr.models.roi_align import SparseMultiScaleRoIAlign, roi_align_csr

LEVELS = ["0", "1", "2", "3"]
IMAGE_SIZE = (96, 128)


def fpn_features(batch: int = 2, channels: int = 5, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Return random P2-P5 maps of a 96x128 input (strides 4-32), each requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    features = OrderedDict()
    for level, name in enumerate(LEVELS):
        stride = 4 * 2**level
        shape = (batch, channels, IMAGE_SIZE[0] // stride, IMAGE_SIZE[1] // stride)
        features[name] = torch.randn(shape, generator=gen).requires_grad_()
    return features


def awkward_boxes(count: int, seed: int) -> torch.Tensor:
    """Return boxes of every FPN level, some thinner than a feature pixel, some leaving the image."""
    gen = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=gen) * torch.tensor([128.0, 96.0])
    size = torch.rand(count, 2, generator=gen) ** 3 * torch.tensor([160.0, 120.0]) + 0.1
    boxes = torch.cat([corner, corner + size], dim=1)
    extra = torch.tensor(
        [
            [-20.0, -15.0, 150.0, 110.0],  # P3 (levels follow sqrt(area): 224 px is P4)
            [-100.0, -80.0, 200.0, 150.0],  # P4
            [-200.0, -150.0, 330.0, 250.0],  # P5
            [127.5, 95.5, 128.0, 96.0],  # in the corner, under a pixel
            [3.0, 4.0, 3.2, 4.1],
        ]
    )
    return torch.cat([boxes, extra])


def pooled_and_grads(pool: torch.nn.Module, boxes: list[torch.Tensor], seed: int = 0):
    """Return (pooled features, gradient of each level) for a fixed random output gradient."""
    features = fpn_features(seed=seed)
    pooled = pool(features, boxes, [IMAGE_SIZE] * 2)
    upstream = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(seed + 1))
    grads = torch.autograd.grad(pooled, list(features.values()), upstream, allow_unused=True)
    return pooled, [torch.zeros_like(f) if g is None else g for f, g in zip(features.values(), grads)]


@pytest.mark.parametrize("output_size,sampling_ratio", [(7, 2), (14, 2), ((5, 3), 1), (4, 3)])
def test_pooled_features_and_gradients_equal_torchvision(output_size, sampling_ratio):
    boxes = [awkward_boxes(40, seed=1), awkward_boxes(25, seed=2)]
    ours = SparseMultiScaleRoIAlign(LEVELS, output_size, sampling_ratio)
    theirs = MultiScaleRoIAlign(LEVELS, output_size, sampling_ratio)
    pooled, grads = pooled_and_grads(ours, boxes)
    expected, expected_grads = pooled_and_grads(theirs, boxes)
    assert pooled.shape == expected.shape
    assert expected.abs().sum() > 0
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)
    for level, (grad, expected_grad) in enumerate(zip(grads, expected_grads)):
        assert expected_grad.abs().sum() > 0, level  # every level pools some box
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5, msg=f"level {level}")


def test_matrices_keep_torch_sparse_invariants_and_sum_shared_pixels():
    # Row 0 samples pixel 5 twice and pixel 2 once; row 1 pixel 7 four times; row 2 has zero weights.
    columns = torch.tensor([[5, 2, 5, 9], [7, 7, 7, 7], [0, 1, 2, 3]])
    weights = torch.tensor([[0.25, 0.5, 0.125, 0.125], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 0.0]])
    matrix, transpose = roi_align_csr(columns, weights, num_columns=10)
    expected = torch.zeros(3, 10)
    expected.index_put_((torch.arange(3)[:, None].expand(3, 4), columns), weights, accumulate=True)
    assert torch.equal(matrix.to_dense(), expected)
    assert torch.equal(transpose.to_dense(), expected.T)
    for m in (matrix, transpose):  # raises when columns are unsorted or repeated within a row
        torch.sparse_csr_tensor(m.crow_indices(), m.col_indices(), m.values(), m.shape, check_invariants=True)
    assert roi_align_csr(columns, weights, num_columns=10, transpose=False)[1] is None


def test_an_image_without_boxes_and_no_boxes_at_all():
    ours = SparseMultiScaleRoIAlign(LEVELS, 7, 2)
    theirs = MultiScaleRoIAlign(LEVELS, 7, 2)
    boxes = [torch.zeros(0, 4), awkward_boxes(6, seed=3)]
    torch.testing.assert_close(pooled_and_grads(ours, boxes)[0], pooled_and_grads(theirs, boxes)[0])
    pooled, grads = pooled_and_grads(ours, [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert pooled.shape == (0, 5, 7, 7)
    assert all(g.abs().sum() == 0 for g in grads)


def test_adaptive_sampling_and_double_features_take_the_expected_path():
    boxes = [awkward_boxes(10, seed=4), awkward_boxes(10, seed=5)]
    adaptive = pooled_and_grads(SparseMultiScaleRoIAlign(LEVELS, 7, 0), boxes)[0]
    assert torch.equal(adaptive, pooled_and_grads(MultiScaleRoIAlign(LEVELS, 7, 0), boxes)[0])
    features = OrderedDict((k, v.detach().double().requires_grad_()) for k, v in fpn_features().items())
    doubles = [b.double() for b in boxes]
    ours = SparseMultiScaleRoIAlign(LEVELS, 7, 2)(features, doubles, [IMAGE_SIZE] * 2)
    theirs = MultiScaleRoIAlign(LEVELS, 7, 2)(features, doubles, [IMAGE_SIZE] * 2)
    assert ours.dtype == torch.float64 and not torch.equal(ours, theirs)  # the sparse path, not a fallback
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_inference_is_torchvision_bit_for_bit():
    boxes = [awkward_boxes(30, seed=6), awkward_boxes(30, seed=7)]
    features = OrderedDict((k, v.detach()) for k, v in fpn_features().items())
    expected = MultiScaleRoIAlign(LEVELS, 14, 2)(features, boxes, [IMAGE_SIZE] * 2)
    assert torch.equal(SparseMultiScaleRoIAlign(LEVELS, 14, 2)(features, boxes, [IMAGE_SIZE] * 2), expected)
    with torch.no_grad():
        grad_features = fpn_features()
        pooled = SparseMultiScaleRoIAlign(LEVELS, 14, 2)(grad_features, boxes, [IMAGE_SIZE] * 2)
    assert torch.equal(pooled, MultiScaleRoIAlign(LEVELS, 14, 2)(features, boxes, [IMAGE_SIZE] * 2))


def test_detector_losses_and_gradients_match_torchvision_roi_align(batch):
    images, targets = batch
    torch.manual_seed(0)
    sparse = tiny_model(roi_align="sparse").train()
    reference = tiny_model(roi_align="torchvision").train()
    reference.load_state_dict(sparse.state_dict())
    assert isinstance(sparse.roi_heads.mask_roi_pool, SparseMultiScaleRoIAlign)
    assert type(reference.roi_heads.mask_roi_pool) is MultiScaleRoIAlign
    losses = {}
    for name, net in (("sparse", sparse), ("reference", reference)):
        torch.manual_seed(1)
        losses[name] = net(images, targets)
        sum(losses[name].values()).backward()
    assert set(losses["sparse"]) == set(losses["reference"])
    for key in losses["sparse"]:
        torch.testing.assert_close(
            losses["sparse"][key], losses["reference"][key], rtol=1e-5, atol=1e-6, msg=key
        )
    reference_params = dict(reference.named_parameters())
    for name, param in sparse.named_parameters():
        if param.grad is not None:  # sums over many pixels: compare against the gradient's own scale
            expected = reference_params[name].grad
            assert (param.grad - expected).abs().max() <= 1e-5 * expected.abs().max() + 1e-9, name


def test_unknown_roi_align_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown roi_align 'fast'"):
        tiny_model(roi_align="fast")
