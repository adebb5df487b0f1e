"""ResNet / ResNeXt + FPN backbones, randomly initialised (weights come from local files only)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

#: Backbone name -> torchvision constructor (called with weights=None: nothing is downloaded).
BACKBONES: dict[str, Callable[..., resnet.ResNet]] = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
    "resnext50_32x4d": resnet.resnext50_32x4d,
    "resnext101_32x8d": resnet.resnext101_32x8d,
}

#: Normalisation choices: frozen_bn for pretrained weights, bn or gn (32 groups) from scratch.
NORMS = ("frozen_bn", "bn", "gn")

_TRAINABLE_ORDER = ["layer4", "layer3", "layer2", "layer1", "conv1"]


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """Return a constructor `f(num_channels) -> nn.Module` for the named normalisation."""
    if norm == "frozen_bn":
        return misc_nn_ops.FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return partial(nn.GroupNorm, 32)
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def build_resnet_fpn_backbone(
    name: str = "resnet50",
    norm: str = "frozen_bn",
    trainable_layers: int = 3,
    fpn_channels: int = 256,
    fpn_norm: str | None = None,
) -> BackboneWithFPN:
    """Return a randomly initialised ResNet/ResNeXt with an FPN (P2-P6, `fpn_channels` wide).

    trainable_layers: how many of layer4, layer3, layer2, layer1, conv1 (in that order) are trained;
    the rest are frozen, as in torchvision. fpn_norm: None (plain FPN) or a norm name ("bn" gives the
    torchvision v2 layout).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    body = BACKBONES[name](weights=None, norm_layer=norm_layer(norm))
    layers_to_train = _TRAINABLE_ORDER[:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for param_name, parameter in body.named_parameters():
        if not any(param_name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    stage2_channels = body.inplanes // 8  # 64 for BasicBlock nets, 256 for Bottleneck nets
    in_channels_list = [stage2_channels * 2**i for i in range(4)]
    return_layers = {f"layer{k}": str(k - 1) for k in range(1, 5)}
    return BackboneWithFPN(
        body,
        return_layers,
        in_channels_list,
        fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=norm_layer(fpn_norm) if fpn_norm else None,
    )
