"""The detector's inference post-processing, with the choice of how masks come out.

`MaskFormTransform` is torchvision's `GeneralizedRCNNTransform` (same resizing, normalisation and box
post-processing) whose `postprocess` can give the masks as `BoxMasks` (binary crops of their boxes,
`msr.models.mask_paste`) instead of full-image float tensors. The default stays torchvision's pasted
`masks` [N, 1, H, W]; `box_mask_output(model)` switches a model to crops for the duration of a block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from msr.models.mask_paste import paste_box_masks

#: "auto": resize masks in batched chunks on a GPU, one exact resize per mask on the CPU
PASTE_MODES = ("auto", "each", "batched")


class MaskFormTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform whose post-processing gives masks as pasted float masks or as BoxMasks.

    `box_masks` (default False): give `masks` as BoxMasks cut at `mask_threshold`; `paste` one of
    PASTE_MODES (how `paste_box_masks` resizes).
    """

    box_masks: bool = False
    mask_threshold: float = 0.5
    paste: str = "auto"

    @classmethod
    def from_transform(cls, transform: GeneralizedRCNNTransform) -> MaskFormTransform:
        """Return a MaskFormTransform with the settings of torchvision's `transform`."""
        return cls(
            transform.min_size,
            transform.max_size,
            transform.image_mean,
            transform.image_std,
            size_divisible=transform.size_divisible,
            fixed_size=transform.fixed_size,
            _skip_resize=transform._skip_resize,
        )

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Return the detections in the original frame: torchvision's, or with `masks` as BoxMasks."""
        if self.training or not self.box_masks:
            return super().postprocess(result, image_shapes, original_image_sizes)
        for pred, im_s, o_im_s in zip(result, image_shapes, original_image_sizes):
            pred["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            if "masks" in pred:
                batched = self.paste == "batched" or (self.paste == "auto" and pred["masks"].is_cuda)
                pred["masks"] = paste_box_masks(
                    pred["masks"], pred["boxes"], o_im_s, self.mask_threshold, batched=batched
                )
            if "keypoints" in pred:
                raise NotImplementedError("box masks are not supported with keypoints")
        return result


@contextmanager
def box_mask_output(
    model: nn.Module, enabled: bool = True, threshold: float = 0.5, paste: str = "auto"
) -> Iterator[None]:
    """Within the block, `model` (whose `transform` is a MaskFormTransform) gives its `masks` as
    BoxMasks cut at `threshold`; a model without one, or `enabled=False`, is left as it is."""
    transform = getattr(model, "transform", None)
    if not enabled or not isinstance(transform, MaskFormTransform):
        yield
        return
    if paste not in PASTE_MODES:
        raise ValueError(f"unknown paste mode {paste!r}; choose one of {', '.join(PASTE_MODES)}")
    saved = (transform.box_masks, transform.mask_threshold, transform.paste)
    transform.box_masks, transform.mask_threshold, transform.paste = True, float(threshold), paste
    try:
        yield
    finally:
        transform.box_masks, transform.mask_threshold, transform.paste = saved


