import functools

import pytest
import torch
from support.tiny_nets import TINY, TINY_BACKBONE, tiny_model
from torch import nn

from msr.models import (
    BACKBONES,
    INPUT_DESIGNS,
    ConcatMaskIoUHead,
    MaskIoULoss,
    TargetClassTargets,
    build_detector,
    build_resnet_fpn_backbone,
)

from .conftest import make_batch


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds_with_fpn(backbone):
    model = build_detector(3, build_resnet_fpn_backbone(backbone))
    assert set(model.backbone.body.return_layers) == {"layer1", "layer2", "layer3", "layer4"}
    assert model.backbone.out_channels == 256
    frozen = [n for n, p in model.backbone.body.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1")) for n in frozen)


def test_group_norm_from_scratch_trains_a_step():
    images, targets = make_batch()
    model = tiny_model(backbone={"norm": "gn", "fpn_channels": 64}, mask_head_channels=32).train()
    assert any(isinstance(m, nn.GroupNorm) for m in model.backbone.body.modules())
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_v2_layout_has_normed_heads_and_runs():
    model = tiny_model(layout="v2").eval()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.roi_heads.box_head.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.roi_heads.mask_head.modules())
    assert len(model.rpn.head.conv) == 2
    with torch.no_grad():
        out = model([torch.rand(3, 64, 80)])
    assert {"mask_scores", "mask_ious"} <= set(out[0])


def test_baseline_has_no_maskiou_parameters_and_same_other_keys():
    ms, base = tiny_model(), tiny_model(design=None)
    assert not base.has_maskiou and ms.has_maskiou
    extra = set(ms.state_dict()) - set(base.state_dict())
    assert extra and all(k.startswith("roi_heads.maskiou_head.") for k in extra)
    assert set(base.state_dict()) <= set(ms.state_dict())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backbone": {"name": "vgg16"}}, "unknown backbone 'vgg16'"),
        ({"backbone": {"norm": "ln"}}, "unknown norm 'ln'"),
        ({"layout": "v3"}, "unknown layout 'v3'"),
        ({"anchor_sizes": (32, 64)}, "one size per FPN level"),
        ({"target": "everything"}, "unknown MaskIoU training target"),
        ({"num_classes": 1}, "counts the background"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        tiny_model(**kwargs)


def test_head_factory_gets_num_classes_and_backbone_channels_and_defaults_are_filled_in():
    calls = []

    def factory(**kwargs):
        calls.append(kwargs)
        return ConcatMaskIoUHead(**kwargs, conv_channels=8, fc_dim=16)

    model = build_detector(5, build_resnet_fpn_backbone(**TINY_BACKBONE), maskiou_head=factory, **TINY)
    assert calls == [{"num_classes": 5, "in_channels": 32}]
    assert model.roi_heads.maskiou_head.predictor.out_features == 5
    assert isinstance(model.roi_heads.maskiou_target, TargetClassTargets)
    assert isinstance(model.roi_heads.maskiou_loss, MaskIoULoss)
    assert model.roi_heads.maskiou_roi_pool is None  # 14x14: the mask branch's pooled features are reused


@pytest.mark.parametrize("design", sorted(INPUT_DESIGNS))
def test_only_a_design_with_another_feature_size_gets_its_own_roi_align(design):
    model = tiny_model(design=design)
    pool = model.roi_heads.maskiou_roi_pool
    if INPUT_DESIGNS[design].feature_size == 14:
        assert pool is None
    else:
        assert pool.output_size == (28, 28) and pool.featmap_names == ["0", "1", "2", "3"]
        assert pool.sampling_ratio == 2


def test_same_seed_gives_the_same_weights_and_the_head_is_built_after_the_mask_head():
    torch.manual_seed(0)
    first = tiny_model().state_dict()
    torch.manual_seed(0)
    second = tiny_model().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    # The MaskIoU head draws its weights after the mask head and before the predictors: without it the
    # predictors get other weights, with it everything before it is unchanged.
    torch.manual_seed(0)
    base = tiny_model(design=None).state_dict()
    assert torch.equal(base["roi_heads.mask_head.1.0.weight"], first["roi_heads.mask_head.1.0.weight"])
    key = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(base[key], first[key])


def test_a_partial_of_a_head_class_is_a_factory():
    factory = functools.partial(INPUT_DESIGNS["multiply"], conv_channels=8, fc_dim=16, num_convs=2)
    model = build_detector(3, build_resnet_fpn_backbone(**TINY_BACKBONE), maskiou_head=factory, **TINY)
    convs = [m for m in model.roi_heads.maskiou_head.convs if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and convs[0].in_channels == 32
