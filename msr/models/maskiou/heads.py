"""The MaskIoU head of Mask Scoring R-CNN (Huang et al., CVPR 2019, §3.2) and its input designs (Table 4).

The head regresses, for every RoI, the IoU between the predicted mask and its ground truth, one value per
class. `MaskIoUHead` is the trunk: convs of `conv_channels` (3x3, the last log2(S/7) at stride 2, so the
output is 7x7), then `num_fcs` FCs of `fc_dim` and a linear predictor of `num_classes` outputs with no
activation. An input design is a subclass that says how many channels its input has and builds it from
the RoI features and the mask probabilities; the default is the paper's `ConcatMaskIoUHead`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Spatial size of the convs' output that feeds the first FC layer (paper: 7x7).
HEAD_OUTPUT_SIZE = 7


def pool_masks(masks: Tensor, size: int) -> Tensor:
    """Return masks [N, K, M, M] max-pooled to [N, K, size, size] (unchanged when M == size)."""
    if masks.shape[-1] == size:
        return masks
    ratio = masks.shape[-1] // size
    if ratio * size != masks.shape[-1]:
        raise ValueError(f"mask size {masks.shape[-1]} is not a multiple of RoI feature size {size}")
    return F.max_pool2d(masks, kernel_size=ratio, stride=ratio)


class MaskIoUHead(nn.Module):
    """Predicts the mask IoU of every RoI for every class: forward returns a [N, num_classes] tensor.

    Subclasses (one per input design) override `input_channels` and `build_input`, and set
    `feature_size`, the RoI feature resolution they need (14, or 28 for a 28x28 RoIAlign).
    """

    #: RoI feature resolution S the design needs; the model pools RoI features at this size.
    feature_size: int = 14

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        conv_channels: int = 256,
        num_convs: int = 4,
        fc_dim: int = 1024,
        num_fcs: int = 2,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        ratio = self.feature_size // HEAD_OUTPUT_SIZE
        if self.feature_size % HEAD_OUTPUT_SIZE or ratio < 1 or ratio & (ratio - 1):
            raise ValueError(
                f"input design {type(self).__name__} has feature_size {self.feature_size}: it must be "
                f"{HEAD_OUTPUT_SIZE} times a power of 2 ({HEAD_OUTPUT_SIZE}, {2 * HEAD_OUTPUT_SIZE}, "
                f"{4 * HEAD_OUTPUT_SIZE}, ...), which the head's stride-2 convs halve to "
                f"{HEAD_OUTPUT_SIZE}x{HEAD_OUTPUT_SIZE}"
            )
        num_downsamples = int(math.log2(ratio))
        if num_convs < num_downsamples:
            raise ValueError(f"input design {type(self).__name__} needs at least {num_downsamples} convs")
        self.num_classes = num_classes

        convs: list[nn.Module] = []
        channels = self.input_channels(in_channels, num_classes)
        for i in range(num_convs):
            # The last `num_downsamples` convs have stride 2 (paper: only the 4th, 14 -> 7).
            stride = 2 if i >= num_convs - num_downsamples else 1
            convs += [nn.Conv2d(channels, conv_channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            channels = conv_channels
        self.convs = nn.Sequential(*convs)

        fcs: list[nn.Module] = []
        fc_in = conv_channels * HEAD_OUTPUT_SIZE * HEAD_OUTPUT_SIZE
        for _ in range(num_fcs):
            fcs += [nn.Linear(fc_in, fc_dim), nn.ReLU(inplace=True)]
            fc_in = fc_dim
        self.fcs = nn.Sequential(*fcs)
        self.predictor = nn.Linear(fc_in, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.convs.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        for module in self.fcs.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def input_channels(self, in_channels: int, num_classes: int) -> int:
        """Return the number of channels of the tensor `build_input` makes from F = in_channels features."""
        raise NotImplementedError(f"{type(self).__name__} must define input_channels")

    def build_input(self, roi_features: Tensor, mask_probs: Tensor, labels: Tensor) -> Tensor:
        """Return the head's input [N, input_channels, S, S].

        roi_features: [N, F, S, S] RoIAlign features (S = feature_size).
        mask_probs:   [N, C, M, M] sigmoid mask probabilities of all classes (M = 28).
        labels:       [N] the class whose mask is used (GT class in training, predicted at test).
        """
        raise NotImplementedError(f"{type(self).__name__} must define build_input")

    def target_masks(self, mask_probs: Tensor, labels: Tensor) -> Tensor:
        """Return [N, 1, S, S]: each RoI's mask of class labels[n], max-pooled to feature_size."""
        index = torch.arange(mask_probs.shape[0], device=mask_probs.device)
        return pool_masks(mask_probs[index, labels][:, None], self.feature_size)

    def forward(self, roi_features: Tensor, mask_probs: Tensor, labels: Tensor) -> Tensor:
        """Return the predicted mask IoU of every RoI for every class, [N, num_classes]."""
        x = self.build_input(roi_features, mask_probs, labels)
        x = self.convs(x)
        x = self.fcs(x.flatten(1))
        return self.predictor(x)


class ConcatMaskIoUHead(MaskIoUHead):
    """Table 4 (a), the paper's default: 14x14 RoI feature ⊕ max-pooled target-class mask (F + 1 channels)."""

    def input_channels(self, in_channels: int, num_classes: int) -> int:
        """Return F + 1."""
        return in_channels + 1

    def build_input(self, roi_features: Tensor, mask_probs: Tensor, labels: Tensor) -> Tensor:
        """Return [N, F + 1, S, S]: the RoI features with the target-class mask as one more channel."""
        masks = self.target_masks(mask_probs, labels).to(roi_features.dtype)
        return torch.cat([roi_features, masks], dim=1)


class MultiplyMaskIoUHead(MaskIoUHead):
    """Table 4 (b): RoI feature multiplied by the max-pooled target-class mask (F channels)."""

    def input_channels(self, in_channels: int, num_classes: int) -> int:
        """Return F."""
        return in_channels

    def build_input(self, roi_features: Tensor, mask_probs: Tensor, labels: Tensor) -> Tensor:
        """Return [N, F, S, S]: the RoI features weighted by the target-class mask."""
        return roi_features * self.target_masks(mask_probs, labels).to(roi_features.dtype)


class AllMasksMaskIoUHead(MaskIoUHead):
    """Table 4 (c): RoI feature ⊕ the max-pooled masks of all C classes (F + C channels)."""

    def input_channels(self, in_channels: int, num_classes: int) -> int:
        """Return F + C."""
        return in_channels + num_classes

    def build_input(self, roi_features: Tensor, mask_probs: Tensor, labels: Tensor) -> Tensor:
        """Return [N, F + C, S, S]: the RoI features with every class's mask appended."""
        masks = pool_masks(mask_probs, self.feature_size).to(roi_features.dtype)
        return torch.cat([roi_features, masks], dim=1)


class Concat28MaskIoUHead(ConcatMaskIoUHead):
    """Table 4 (d): the 28x28 target-class mask ⊕ a 28x28 RoI feature (two stride-2 convs)."""

    feature_size = 28


class MaskOnlyMaskIoUHead(MaskIoUHead):
    """A toy design (not in the paper): the max-pooled target-class mask alone, no RoI feature (1 channel)."""

    def input_channels(self, in_channels: int, num_classes: int) -> int:
        """Return 1."""
        return 1

    def build_input(self, roi_features: Tensor, mask_probs: Tensor, labels: Tensor) -> Tensor:
        """Return [N, 1, S, S]: the target-class mask; roi_features are ignored."""
        return self.target_masks(mask_probs, labels)


#: Input designs by name (the paper's Table 4 plus the toy design), for tests and benchmarks.
INPUT_DESIGNS: dict[str, type[MaskIoUHead]] = {
    "concat": ConcatMaskIoUHead,
    "multiply": MultiplyMaskIoUHead,
    "all_masks": AllMasksMaskIoUHead,
    "concat_28": Concat28MaskIoUHead,
    "mask_only": MaskOnlyMaskIoUHead,
}


def input_design(name: str) -> type[MaskIoUHead]:
    """Return the head class of the named input design; a ValueError names the choices otherwise."""
    if name not in INPUT_DESIGNS:
        raise ValueError(f"unknown MaskIoU input design {name!r}; choose one of {', '.join(INPUT_DESIGNS)}")
    return INPUT_DESIGNS[name]
