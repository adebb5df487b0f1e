import pytest
import torch
import torch.nn.functional as F

from msr.models import (
    INPUT_DESIGNS,
    ConcatMaskIoUHead,
    MaskIoUHead,
    MaskOnlyMaskIoUHead,
    input_design,
)


def test_paper_parameter_count_computed_by_hand():
    # conv1: 257 -> 256, 3x3, with bias; conv2-4: 256 -> 256; FC 256*7*7 -> 1024 -> 1024 -> 81.
    conv1 = 257 * 256 * 9 + 256
    conv_rest = 3 * (256 * 256 * 9 + 256)
    fc1 = 256 * 7 * 7 * 1024 + 1024
    fc2 = 1024 * 1024 + 1024
    fc3 = 1024 * 81 + 81
    expected = conv1 + conv_rest + fc1 + fc2 + fc3
    head = ConcatMaskIoUHead(num_classes=81)
    assert sum(p.numel() for p in head.parameters()) == expected == 16_341_329


def test_paper_layers_and_init():
    torch.manual_seed(0)
    head = ConcatMaskIoUHead(num_classes=81).requires_grad_(False)
    convs = [m for m in head.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (1, 1), (1, 1), (2, 2)]
    assert convs[0].in_channels == 257
    assert all(float(c.bias.abs().max()) == 0 for c in convs)
    # kaiming_normal fan_out for ReLU: std = sqrt(2 / (out_channels * 9))
    expected_std = (2 / (256 * 9)) ** 0.5
    assert abs(float(convs[1].weight.std()) - expected_std) / expected_std < 0.02
    assert abs(float(head.predictor.weight.std()) - 0.01) < 0.001
    fc1 = head.fcs[0]
    # kaiming_uniform(a=1): bound = sqrt(6 / ((1 + 1) * fan_in)) = sqrt(3 / fan_in)
    bound = (3 / fc1.in_features) ** 0.5
    assert float(fc1.weight.abs().max()) <= bound
    assert float(fc1.weight.abs().max()) > 0.99 * bound


def test_state_dict_keys_are_the_trunks():
    head = ConcatMaskIoUHead(3, in_channels=4, conv_channels=4, fc_dim=8)
    assert list(head.state_dict()) == [
        *(f"convs.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")),
        *(f"fcs.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")),
        "predictor.weight",
        "predictor.bias",
    ]


@pytest.mark.parametrize("design", INPUT_DESIGNS)
def test_output_shape_for_every_input_design(design):
    num_classes, n = 5, 3
    head = INPUT_DESIGNS[design](num_classes, in_channels=16, conv_channels=8, fc_dim=32)
    size = 28 if design == "concat_28" else 14
    assert head.feature_size == size
    feats = torch.randn(n, 16, size, size)
    probs = torch.rand(n, num_classes, 28, 28)
    labels = torch.tensor([1, 4, 2])
    out = head(feats, probs, labels)
    assert out.shape == (n, num_classes)
    assert head(feats[:0], probs[:0], labels[:0]).shape == (0, num_classes)


@pytest.mark.parametrize(
    "design,channels",
    [("concat", 17), ("multiply", 16), ("all_masks", 21), ("concat_28", 17), ("mask_only", 1)],
)
def test_input_channels_of_every_design(design, channels):
    head = INPUT_DESIGNS[design](5, in_channels=16, conv_channels=8, fc_dim=32)
    assert head.convs[0].in_channels == channels


def test_concat_input_is_feature_plus_maxpooled_target_mask():
    head = ConcatMaskIoUHead(3, in_channels=2, conv_channels=4, fc_dim=8)
    feats = torch.randn(1, 2, 14, 14)
    probs = torch.zeros(1, 3, 28, 28)
    probs[0, 2, 0, 1] = 0.9  # one pixel of class 2, inside the first 2x2 pooling window
    probs[0, 1] = 0.7  # another class everywhere: must not leak into the input
    x = head.build_input(feats, probs, torch.tensor([2]))
    assert x.shape == (1, 3, 14, 14)
    torch.testing.assert_close(x[:, :2], feats)
    assert float(x[0, 2, 0, 0]) == pytest.approx(0.9)
    assert float(x[0, 2].sum()) == pytest.approx(0.9)


def test_mask_only_input_ignores_the_roi_features():
    head = MaskOnlyMaskIoUHead(3, in_channels=2, conv_channels=4, fc_dim=8)
    probs = torch.rand(2, 3, 28, 28)
    labels = torch.tensor([1, 2])
    x = head.build_input(torch.randn(2, 2, 14, 14), probs, labels)
    expected = F.max_pool2d(probs[torch.arange(2), labels][:, None], kernel_size=2, stride=2)
    assert torch.equal(x, expected)
    noise, zeros = torch.randn(2, 2, 14, 14), torch.zeros(2, 2, 14, 14)
    assert torch.equal(head(noise, probs, labels), head(zeros, probs, labels))


def test_the_base_class_is_not_a_design():
    with pytest.raises(NotImplementedError, match="MaskIoUHead must define input_channels"):
        MaskIoUHead(3)


def test_unknown_design_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown MaskIoU input design 'concatenate'"):
        input_design("concatenate")


def test_a_28x28_design_needs_two_stride_2_convs():
    head = INPUT_DESIGNS["concat_28"](3, in_channels=4, conv_channels=4, fc_dim=8)
    convs = [m for m in head.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    with pytest.raises(ValueError, match="Concat28MaskIoUHead needs at least 2 convs"):
        INPUT_DESIGNS["concat_28"](3, num_convs=1)


@pytest.mark.parametrize("size", [3, 21, 42, 0])
def test_a_feature_size_the_convs_cannot_halve_to_7_is_a_clear_error(size):
    design = type("OddSizeHead", (ConcatMaskIoUHead,), {"feature_size": size})
    message = (
        f"input design OddSizeHead has feature_size {size}: it must be 7 times a power of 2 "
        "(7, 14, 28, ...), which the head's stride-2 convs halve to 7x7"
    )
    with pytest.raises(ValueError) as raised:
        design(num_classes=2)
    assert str(raised.value) == message


@pytest.mark.parametrize(("size", "stride_2_convs"), [(7, 0), (14, 1), (28, 2)])
def test_feature_sizes_of_7_times_a_power_of_2_build_and_predict(size, stride_2_convs):
    design = type("SizedHead", (ConcatMaskIoUHead,), {"feature_size": size})
    head = design(num_classes=2, conv_channels=8, fc_dim=16)
    strides = [m.stride[0] for m in head.convs if isinstance(m, torch.nn.Conv2d)]
    assert strides.count(2) == stride_2_convs and strides[: 4 - stride_2_convs] == [1] * (4 - stride_2_convs)
    out = head(torch.rand(3, 256, size, size), torch.rand(3, 2, 28, 28), torch.tensor([0, 1, 1]))
    assert out.shape == (3, 2)
