"""Binary instance masks kept as crops of their boxes: the lean form of a detector's mask output.

torchvision pastes every 28x28 mask into a full-image float tensor (`paste_masks_in_image`: one
bilinear resize to the expanded box, one zero-filled [H, W] tensor per detection) and the caller then
thresholds it. `paste_box_masks` returns the same pixels without the full image: each mask is resized
exactly as torchvision resizes it (the same `expand_masks` / `expand_boxes` and the same
`F.interpolate` call on the same device), thresholded (probability >= `threshold`) and cut to the part
of its box inside the image. Everything outside that region is 0 in torchvision's pasted mask too, so
`BoxMasks.to_dense()` equals `paste_masks_in_image(...) >= threshold` bit for bit.

`batched=True` resizes a chunk of masks in one gather (for a GPU: no kernel launch per mask); its
bilinear weights are PyTorch's, but the products are summed in another order, so probabilities differ
from `F.interpolate`'s by float rounding (< 2e-6): a pixel can flip only where its probability lies that
close to the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

#: masks resized together by the batched path (bounded by the largest box of the chunk)
BATCH_CHUNK = 32


@dataclass
class BoxMasks:
    """N binary masks of one [H, W] image, each stored as the crop of its region (duck-types a tensor of
    masks where the output code needs it: `len`, indexing, `detach`, `cpu`, `to`).

    `data`: bool [sum of region areas], the crops flattened one after another (row-major);
    `regions`: int64 [N, 4] xyxy pixel region of each crop inside the image (x1, y1 exclusive; an empty
    region holds no pixel), on the CPU; `image_size`: (H, W); `threshold`: the probability the masks
    were cut at (a pixel is in a mask when its probability is >= threshold).
    """

    data: torch.Tensor
    regions: torch.Tensor
    image_size: tuple[int, int]
    threshold: float = 0.5

    def __post_init__(self) -> None:
        self.regions = self.regions.to("cpu", torch.int64).reshape(-1, 4)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        sizes = self.crop_sizes()
        areas = (sizes[:, 0] * sizes[:, 1]).tolist()
        if sum(areas) != self.data.numel():
            raise ValueError(f"BoxMasks: {self.data.numel()} crop pixels for regions holding {sum(areas)}")
        self._areas = areas

    def __len__(self) -> int:
        return int(self.regions.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Return (N, H, W), the shape of the dense masks."""
        return (len(self), *self.image_size)

    @property
    def device(self) -> torch.device:
        """Return the device of the crops."""
        return self.data.device

    def numel(self) -> int:
        """Return the number of pixels of the dense masks (N * H * W)."""
        n, h, w = self.shape
        return n * h * w

    def crop_sizes(self) -> torch.Tensor:
        """Return int64 [N, 2]: (height, width) of each crop."""
        return (self.regions[:, [3, 2]] - self.regions[:, [1, 0]]).clamp(min=0)

    def crops(self) -> list[torch.Tensor]:
        """Return the N bool crops, [h_i, w_i] each (views of `data`)."""
        sizes = self.crop_sizes().tolist()
        return [flat.view(h, w) for flat, (h, w) in zip(self.data.split(self._areas), sizes)]

    def __getitem__(self, index: torch.Tensor | Sequence[int] | slice) -> BoxMasks:
        """Return the masks selected by `index` (a bool mask, indices or a slice) as BoxMasks."""
        keep = torch.arange(len(self))[index].reshape(-1).tolist()
        crops = self.crops()
        data = torch.cat([crops[i].reshape(-1) for i in keep]) if keep else self.data[:0]
        return BoxMasks(data, self.regions[keep], self.image_size, self.threshold)

    def to(self, device: torch.device | str) -> BoxMasks:
        """Return the masks with their crops on `device`."""
        return BoxMasks(self.data.to(device), self.regions, self.image_size, self.threshold)

    def cpu(self) -> BoxMasks:
        """Return the masks with their crops on the CPU."""
        return self.to("cpu")

    def detach(self) -> BoxMasks:
        """Return self (bool crops carry no gradient)."""
        return self

    def to_dense(self) -> torch.Tensor:
        """Return bool [N, H, W]: the masks pasted into the full image (for drawing a picture)."""
        dense = torch.zeros(self.shape, dtype=torch.bool, device=self.device)
        for mask, crop, (x0, y0, x1, y1) in zip(dense, self.crops(), self.regions.tolist()):
            mask[y0:y1, x0:x1] = crop
        return dense

    def enlarge(self, factor: int) -> BoxMasks:
        """Return the masks of the image enlarged `factor` times by nearest neighbour."""
        if factor == 1:
            return self
        crops = [
            c.repeat_interleave(factor, 0).repeat_interleave(factor, 1).reshape(-1)
            for c in self.crops()
        ]
        data = torch.cat(crops) if crops else self.data[:0]
        size = (self.image_size[0] * factor, self.image_size[1] * factor)
        return BoxMasks(data, self.regions * factor, size, self.threshold)


def paste_regions(
    boxes: torch.Tensor, mask_size: int, image_size: tuple[int, int], padding: int = 1
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, int]], list[tuple[int, int]]]:
    """Return, per box, torchvision's paste geometry as Python ints: (resized mask height, width), the
    region (x0, y0, x1, y1) it covers in the image (empty when x1 <= x0 or y1 <= y0) and the region's
    offset (row, column) inside the resized mask.

    `boxes` [N, 4] xyxy in the image; `mask_size` M of the [M, M] masks before padding.
    """
    scale = float(mask_size + 2 * padding) / mask_size  # expand_masks' scale
    expanded = expand_boxes(boxes, scale).to(dtype=torch.int64).tolist()  # one host sync for all boxes
    im_h, im_w = image_size
    sizes, regions, offsets = [], [], []
    for bx0, by0, bx1, by1 in expanded:
        sizes.append((max(by1 - by0 + 1, 1), max(bx1 - bx0 + 1, 1)))
        x0, x1 = max(bx0, 0), min(bx1 + 1, im_w)
        y0, y1 = max(by0, 0), min(by1 + 1, im_h)
        regions.append((x0, y0, max(x1, x0), max(y1, y0)))
        offsets.append((y0 - by0, x0 - bx0))
    return sizes, regions, offsets


def paste_box_masks(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    image_size: tuple[int, int],
    threshold: float = 0.5,
    batched: bool = False,
    padding: int = 1,
) -> BoxMasks:
    """Return BoxMasks (crops on the CPU) of `masks` [N, 1, M, M] probabilities pasted at `boxes` [N, 4]
    (xyxy in an image of `image_size` (H, W)) and cut at `threshold`.

    Equal to `torchvision...paste_masks_in_image(masks, boxes, image_size) >= threshold` bit for bit
    (`batched=False`: the same resize call per mask on the masks' device). `batched=True` resizes chunks
    of masks in one gather (see the module docstring). The crops come to the CPU in one copy.
    """
    if not threshold > 0:  # outside its region a pasted mask is 0, which a threshold <= 0 would keep
        raise ValueError(f"paste_box_masks: threshold must be > 0, got {threshold}")
    if masks.ndim == 3:
        masks = masks[:, None]
    n = masks.shape[0]
    if boxes.shape[0] != n:
        raise ValueError(f"paste_box_masks: {n} masks for {boxes.shape[0]} boxes")
    padded, _ = expand_masks(masks, padding=padding)  # [N, 1, M + 2p, M + 2p]
    sizes, regions, offsets = paste_regions(boxes, masks.shape[-1], image_size, padding)
    resize = _resize_batched if batched else _resize_each
    pieces = resize(padded[:, 0], sizes, regions, offsets, threshold)
    data = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.bool, device=masks.device)
    regions_t = torch.tensor(regions, dtype=torch.int64).reshape(-1, 4)
    return BoxMasks(data.cpu(), regions_t, image_size, threshold)


def _resize_each(
    padded: torch.Tensor,
    sizes: list[tuple[int, int]],
    regions: list[tuple[int, int, int, int]],
    offsets: list[tuple[int, int]],
    threshold: float,
) -> list[torch.Tensor]:
    """Return each mask's flattened bool crop, resized by torchvision's own `F.interpolate` call."""
    pieces = []
    for mask, (h, w), (x0, y0, x1, y1), (oy, ox) in zip(padded, sizes, regions, offsets):
        if x1 <= x0 or y1 <= y0:
            continue
        resized = F.interpolate(mask.expand(1, 1, -1, -1), size=(h, w), mode="bilinear", align_corners=False)
        pieces.append((resized[0, 0, oy : oy + y1 - y0, ox : ox + x1 - x0] >= threshold).reshape(-1))
    return pieces


def _resize_batched(
    padded: torch.Tensor,
    sizes: list[tuple[int, int]],
    regions: list[tuple[int, int, int, int]],
    offsets: list[tuple[int, int]],
    threshold: float,
    chunk: int = BATCH_CHUNK,
) -> list[torch.Tensor]:
    """Return each mask's flattened bool crop, computed for chunks of masks with one gather each.

    Every crop is evaluated on the grid of its chunk's largest crop: source rows and columns and their
    bilinear weights follow `F.interpolate(..., mode="bilinear", align_corners=False)`.
    """
    device, source = padded.device, padded.shape[-1]
    pieces: list[torch.Tensor] = []
    for start in range(0, len(sizes), chunk):
        stop = min(start + chunk, len(sizes))
        crop_h = [max(r[3] - r[1], 0) for r in regions[start:stop]]
        crop_w = [max(r[2] - r[0], 0) for r in regions[start:stop]]
        grid_h, grid_w = max(crop_h), max(crop_w)
        if grid_h == 0 or grid_w == 0:
            continue
        out_h = torch.tensor([s[0] for s in sizes[start:stop]], dtype=torch.float32, device=device)
        out_w = torch.tensor([s[1] for s in sizes[start:stop]], dtype=torch.float32, device=device)
        off = torch.tensor(offsets[start:stop], dtype=torch.float32, device=device)  # [n, 2] (row, col)
        rows = off[:, :1] + torch.arange(grid_h, dtype=torch.float32, device=device)  # [n, gh]
        cols = off[:, 1:] + torch.arange(grid_w, dtype=torch.float32, device=device)  # [n, gw]
        r0, r1, wr0, wr1 = _linear_taps(rows, source / out_h[:, None], source)
        c0, c1, wc0, wc1 = _linear_taps(cols, source / out_w[:, None], source)
        masks = padded[start:stop].float()  # [n, S, S]
        index = torch.arange(stop - start, device=device)[:, None, None]
        top = masks[index, r0[:, :, None], c0[:, None, :]] * wc0[:, None, :]
        top = top + masks[index, r0[:, :, None], c1[:, None, :]] * wc1[:, None, :]
        bottom = masks[index, r1[:, :, None], c0[:, None, :]] * wc0[:, None, :]
        bottom = bottom + masks[index, r1[:, :, None], c1[:, None, :]] * wc1[:, None, :]
        binary = (top * wr0[:, :, None] + bottom * wr1[:, :, None]) >= threshold  # [n, gh, gw]
        for k in range(stop - start):
            if crop_h[k] and crop_w[k]:
                pieces.append(binary[k, : crop_h[k], : crop_w[k]].reshape(-1))
    return pieces


def _linear_taps(
    dst: torch.Tensor, scale: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (index0, index1, weight0, weight1) of bilinear resizing (align_corners=False) for the
    destination coordinates `dst` with `scale` = source size / destination size, as PyTorch computes them."""
    src = (scale * (dst + 0.5) - 0.5).clamp(min=0)
    index0 = src.floor().to(torch.int64).clamp(max=size - 1)
    weight1 = (src - index0).clamp(0, 1)
    index1 = torch.where(index0 < size - 1, index0 + 1, index0)
    return index0, index1, 1.0 - weight1, weight1
