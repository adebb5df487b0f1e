"""The MaskIoU head of Mask Scoring R-CNN (Huang et al., CVPR 2019, §3.2).

It regresses, for every RoI, the IoU between the predicted mask and its ground truth, one value per
class. The default is the paper's design: the 14x14 RoIAlign feature concatenated with the max-pooled
28x28 mask probability of the target class (257 channels), four 3x3 convs of 256 channels with the last
at stride 2 (14 -> 7), then FC 1024, FC 1024 and FC num_classes with no activation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Input designs of the paper's Table 4.
#: concat     - target-class mask, max-pooled 28->14, concatenated to the 14x14 RoI feature (default)
#: multiply   - RoI feature multiplied by the max-pooled target-class mask
#: all_masks  - all C class masks, max-pooled, concatenated to the RoI feature
#: concat_28  - the 28x28 target-class mask concatenated to a 28x28 RoI feature
INPUT_DESIGNS = ("concat", "multiply", "all_masks", "concat_28")

#: Spatial size of the convs' output that feeds the first FC layer (paper: 7x7).
HEAD_OUTPUT_SIZE = 7


def maskiou_feature_size(design: str) -> int:
    """Return the RoI feature resolution (14 or 28) that an input design needs."""
    _check_design(design)
    return 28 if design == "concat_28" else 14


def _check_design(design: str) -> None:
    if design not in INPUT_DESIGNS:
        raise ValueError(f"unknown MaskIoU input design {design!r}; choose one of {', '.join(INPUT_DESIGNS)}")


class MaskIoUHead(nn.Module):
    """Predicts the mask IoU of every RoI for every class: forward returns a [N, num_classes] tensor."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        input_design: str = "concat",
        conv_channels: int = 256,
        num_convs: int = 4,
        fc_dim: int = 1024,
        num_fcs: int = 2,
    ) -> None:
        super().__init__()
        _check_design(input_design)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        feature_size = maskiou_feature_size(input_design)
        num_downsamples = int(math.log2(feature_size // HEAD_OUTPUT_SIZE))
        if num_convs < num_downsamples:
            raise ValueError(f"input design {input_design!r} needs at least {num_downsamples} convs")

        self.num_classes = num_classes
        self.input_design = input_design
        self.feature_size = feature_size
        if input_design in ("concat", "concat_28"):
            first_in = in_channels + 1
        elif input_design == "multiply":
            first_in = in_channels
        else:  # all_masks
            first_in = in_channels + num_classes

        convs: list[nn.Module] = []
        channels = first_in
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

    def build_input(
        self, roi_features: torch.Tensor, mask_probs: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Return the head's input tensor for the configured design.

        roi_features: [N, F, S, S] RoIAlign features (S = 14, or 28 for concat_28).
        mask_probs:   [N, C, M, M] sigmoid mask probabilities of all classes (M = 28).
        labels:       [N] the class whose mask is used (GT class in training, predicted at test).
        """
        size = roi_features.shape[-1]
        if self.input_design == "all_masks":
            masks = mask_probs
        else:
            index = torch.arange(mask_probs.shape[0], device=mask_probs.device)
            masks = mask_probs[index, labels][:, None]  # [N, 1, M, M]
        if masks.shape[-1] != size:
            ratio = masks.shape[-1] // size
            if ratio * size != masks.shape[-1]:
                raise ValueError(f"mask size {masks.shape[-1]} is not a multiple of RoI feature size {size}")
            masks = F.max_pool2d(masks, kernel_size=ratio, stride=ratio)
        masks = masks.to(roi_features.dtype)
        if self.input_design == "multiply":
            return roi_features * masks
        return torch.cat([roi_features, masks], dim=1)

    def forward(
        self, roi_features: torch.Tensor, mask_probs: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Return the predicted mask IoU of every RoI for every class, [N, num_classes]."""
        x = self.build_input(roi_features, mask_probs, labels)
        x = self.convs(x)
        x = self.fcs(x.flatten(1))
        return self.predictor(x)
