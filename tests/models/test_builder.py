import pytest
import torch
from torch import nn

from msr.models import BACKBONES, build_model

from .conftest import tiny_model


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds_with_fpn(backbone):
    model = build_model(3, backbone=backbone, maskiou=False)
    assert set(model.backbone.body.return_layers) == {"layer1", "layer2", "layer3", "layer4"}
    assert model.backbone.out_channels == 256
    frozen = [n for n, p in model.backbone.body.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1")) for n in frozen)


def test_group_norm_from_scratch_trains_a_step():
    from .conftest import make_batch

    images, targets = make_batch()
    model = tiny_model(norm="gn", fpn_channels=64, mask_head_channels=32).train()
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
    ms, base = tiny_model(), tiny_model(maskiou=False)
    assert not base.has_maskiou and ms.has_maskiou
    extra = set(ms.state_dict()) - set(base.state_dict())
    assert extra and all(k.startswith("roi_heads.maskiou_head.") for k in extra)
    assert set(base.state_dict()) <= set(ms.state_dict())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backbone": "vgg16"}, "unknown backbone 'vgg16'"),
        ({"norm": "ln"}, "unknown norm 'ln'"),
        ({"layout": "v3"}, "unknown layout 'v3'"),
        ({"anchor_sizes": (32, 64)}, "one size per FPN level"),
        ({"maskiou_target": "everything"}, "unknown MaskIoU training target"),
        ({"num_classes": 1}, "counts the background"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_model(**kwargs)
