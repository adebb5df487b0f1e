"""RoIAlign over an FPN as one sparse matrix product: torchvision's numbers, a faster CPU backward.

torchvision's CPU `roi_align` backward runs on one thread and recomputes every sample's bilinear
weights once per channel; on the quickstart it took a quarter of a training step. RoIAlign with a fixed
sampling ratio is linear in the features: every output value is a weighted sum of at most
4 * sampling_ratio**2 feature values. So all RoIs of all FPN levels are pooled as one product
`M @ F`, where F stacks every level's features as rows of C channels and M (one row per RoI bin,
16 entries for sampling ratio 2) holds torchvision's bilinear weights divided by the sample count.
The backward is `M^T @ dF`. Both products are multithreaded sparse kernels.

`SparseMultiScaleRoIAlign` is torchvision's `MultiScaleRoIAlign` (same levels, same level mapping,
same result up to float rounding) that takes this path when a gradient will flow back to float32/float64
CPU features with a positive sampling ratio (training), and torchvision's kernel otherwise: inference
(whose forward alone is not faster this way on large maps, and stays bit-identical to torchvision's),
GPUs, half precision, adaptive sampling.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper

#: Implementations build_detector accepts for its RoI pooling.
ROI_ALIGN_IMPLS = ("sparse", "torchvision")


def _axis_taps(coords: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision's bilinear rule along one axis: (low index, high index, low weight, high weight).

    coords [K, S] are sample positions in feature pixels, size [K, 1] the axis length of each RoI's
    level. A sample outside [-1, size] gets weight 0; positions are clamped to [0, size - 1].
    """
    inside = ((coords >= -1.0) & (coords <= size)).to(coords.dtype)
    coords = coords.clamp(min=0.0)
    low = coords.floor()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coords), coords - low)
    return low.long(), high.long(), (1.0 - frac) * inside, frac * inside


def roi_align_matrix(
    rois: Tensor,
    scales: Tensor,
    heights: Tensor,
    widths: Tensor,
    offsets: Tensor,
    output_size: tuple[int, int],
    sampling_ratio: int,
) -> tuple[Tensor, Tensor]:
    """Return (column indices, weights), each [K * PH * PW, 4 * sampling_ratio**2], of RoIAlign's matrix.

    rois [K, 5] are (image index, x1, y1, x2, y2) in image pixels; scales, heights, widths and offsets [K]
    give each RoI's feature level: its spatial scale, its size and the row where that level's image 0
    starts in the stacked features. Row r = (k * PH + ph) * PW + pw of the matrix holds the weights of
    output bin (ph, pw) of RoI k: torchvision's aligned=False RoIAlign (RoIs at least 1 feature pixel,
    sampling_ratio x sampling_ratio samples averaged per bin).
    """
    num_rois = rois.shape[0]
    pooled_h, pooled_w = output_size
    s = sampling_ratio
    image = rois[:, 0].long()
    x1, y1, x2, y2 = (rois[:, i] * scales for i in range(1, 5))
    bin_h = (y2 - y1).clamp(min=1.0) / pooled_h
    bin_w = (x2 - x1).clamp(min=1.0) / pooled_w

    def positions(start: Tensor, bin_size: Tensor, pooled: int) -> Tensor:
        steps = torch.arange(pooled * s, dtype=rois.dtype, device=rois.device)
        bins, samples = (steps // s)[None], (steps % s)[None] + 0.5
        # torchvision's expression, term by term, so the positions round as its kernel's do
        return start[:, None] + bins * bin_size[:, None] + samples * bin_size[:, None] / s  # [K, pooled * s]

    heights_f = heights.to(rois.dtype)[:, None]
    widths_f = widths.to(rois.dtype)[:, None]
    y_low, y_high, wy_low, wy_high = _axis_taps(positions(y1, bin_h, pooled_h), heights_f)
    x_low, x_high, wx_low, wx_high = _axis_taps(positions(x1, bin_w, pooled_w), widths_f)
    # Along each axis: [K, bins, samples, 2 taps]; the 1/s of each axis makes the 1/s**2 average.
    rows_y = torch.stack([y_low, y_high], -1).view(num_rois, pooled_h, 1, s, 2, 1, 1)
    cols_x = torch.stack([x_low, x_high], -1).view(num_rois, 1, pooled_w, 1, 1, s, 2)
    weight_y = (torch.stack([wy_low, wy_high], -1) / s).view(num_rois, pooled_h, 1, s, 2, 1, 1)
    weight_x = (torch.stack([wx_low, wx_high], -1) / s).view(num_rois, 1, pooled_w, 1, 1, s, 2)
    base = (offsets + image * heights * widths).view(num_rois, 1, 1, 1, 1, 1, 1)
    columns = base + rows_y * widths.view(num_rois, 1, 1, 1, 1, 1, 1) + cols_x
    taps = 4 * s * s
    return columns.reshape(-1, taps), (weight_y * weight_x).reshape(-1, taps)


def _csr(crow: Tensor, columns: Tensor, values: Tensor, num_columns: int) -> Tensor:
    """Return the CSR matrix of rows crow[i]:crow[i + 1] of (columns, values) (sorted, distinct per row)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, columns, values, (crow.shape[0] - 1, num_columns), check_invariants=False
        )


def roi_align_csr(
    columns: Tensor, weights: Tensor, num_columns: int, transpose: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Return (M, M^T) as CSR matrices from equal-sized rows of (columns, weights) [R, T].

    Entries of a row that share a column (samples in the same feature pixel) are summed, and columns
    are sorted within each row, as torch's sparse invariants require. M^T (for the backward) is None
    when transpose=False.
    """
    num_rows, taps = columns.shape
    columns, order = torch.sort(columns.to(torch.int32), dim=1)
    weights = torch.gather(weights, 1, order)
    first = torch.ones_like(columns, dtype=torch.bool)
    first[:, 1:] = columns[:, 1:] != columns[:, :-1]
    first = first.reshape(-1)
    entry = torch.cumsum(first, 0) - 1  # index of each tap's distinct (row, column) entry
    num_entries = int(entry[-1]) + 1 if entry.numel() else 0
    values = weights.new_zeros(num_entries).index_add_(0, entry, weights.reshape(-1))
    entry_columns = columns.reshape(-1)[first].long()
    crow = torch.zeros(num_rows + 1, dtype=torch.int64, device=columns.device)
    torch.cumsum(first.view(num_rows, taps).sum(1), 0, out=crow[1:])
    matrix = _csr(crow, entry_columns, values, num_columns)
    if not transpose:
        return matrix, None
    # M^T: entries ordered by column, then row (a stable sort keeps the row-major order within a column)
    entry_rows = torch.arange(num_rows, device=columns.device).repeat_interleave(crow.diff())
    by_column = torch.argsort(entry_columns.to(torch.int32), stable=True)
    crow_t = torch.zeros(num_columns + 1, dtype=torch.int64, device=columns.device)
    torch.cumsum(torch.bincount(entry_columns, minlength=num_columns), 0, out=crow_t[1:])
    return matrix, _csr(crow_t, entry_rows[by_column], values[by_column], num_rows)


class _SparseProduct(torch.autograd.Function):
    """out = M @ features for a constant sparse M; the backward is M^T @ grad_out."""

    @staticmethod
    def forward(ctx, features: Tensor, matrix: Tensor, transpose: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.transpose = transpose
        return torch.sparse.mm(matrix, features)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return torch.sparse.mm(ctx.transpose, grad_out.contiguous()), None, None


def sparse_multiscale_roi_align(
    features: list[Tensor],
    boxes: list[Tensor],
    scales: list[float],
    levels: Tensor,
    output_size: tuple[int, int],
    sampling_ratio: int,
) -> Tensor:
    """Return the pooled features [K, C, PH, PW] of every box (all images' boxes, in order).

    features: one [N, C, H_l, W_l] map per level; boxes: per image [K_i, 4] (x1, y1, x2, y2) in image
    pixels; scales: each level's spatial scale; levels [K]: the level index of every box.
    """
    channels = features[0].shape[1]
    stacked = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, channels) for f in features])
    device = stacked.device
    sizes = torch.tensor([f.shape[-2:] for f in features], dtype=torch.int64, device=device)
    starts = [0]
    for f in features[:-1]:
        starts.append(starts[-1] + f.shape[0] * f.shape[2] * f.shape[3])
    image = torch.cat(
        [torch.full((len(b),), i, dtype=boxes[0].dtype, device=device) for i, b in enumerate(boxes)]
    )
    rois = torch.cat([image[:, None], torch.cat(boxes)], dim=1)
    levels = levels.long()
    columns, weights = roi_align_matrix(
        rois,
        torch.tensor(scales, dtype=rois.dtype, device=device)[levels],
        sizes[levels, 0],
        sizes[levels, 1],
        torch.tensor(starts, dtype=torch.int64, device=device)[levels],
        output_size,
        sampling_ratio,
    )
    backward = torch.is_grad_enabled() and stacked.requires_grad
    matrix, transpose = roi_align_csr(
        columns, weights.to(stacked.dtype), stacked.shape[0], transpose=backward
    )
    pooled = _SparseProduct.apply(stacked, matrix, transpose)
    return pooled.view(rois.shape[0], *output_size, channels).permute(0, 3, 1, 2).contiguous()


def infer_scale(feature: Tensor, image_size: tuple[int, int]) -> float:
    """Return the power of two nearest to the feature map's size over the image's (torchvision's rule)."""
    return 2.0 ** round(math.log2(feature.shape[-2] / image_size[0]))


class SparseMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign whose CPU training pass is one sparse matrix product (module doc).

    Same constructor and forward as torchvision's; returns the pooled features [K, C, PH, PW] in the
    order of the boxes. The sparse path runs when a gradient flows back to float32/float64 CPU features
    and the sampling ratio is fixed; every other call is torchvision's.
    """

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        sparse = (
            self.sampling_ratio > 0
            and torch.is_grad_enabled()
            and any(f.requires_grad for f in features)
            and features[0].device.type == "cpu"
            and features[0].dtype in (torch.float32, torch.float64)
            and all(f.dtype == features[0].dtype for f in features)
            and all(b.dtype == features[0].dtype for b in boxes)
            and not torch.jit.is_scripting()
        )
        if not sparse:
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:
            largest = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
            self.scales = [infer_scale(f, largest) for f in features]
            self.map_levels = LevelMapper(
                int(-math.log2(self.scales[0])),
                int(-math.log2(self.scales[-1])),
                canonical_scale=self.canonical_scale,
                canonical_level=self.canonical_level,
            )
        levels = self.map_levels(boxes) if len(features) > 1 else torch.zeros(sum(len(b) for b in boxes))
        return sparse_multiscale_roi_align(
            features, boxes, self.scales, levels, self.output_size, self.sampling_ratio
        )
