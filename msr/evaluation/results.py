"""Model outputs (torchvision Mask R-CNN convention) → COCO result dicts; reading and checking result lists.

Mask binarisation: a pixel belongs to the mask when its probability is **≥ 0.5** (`mask_threshold`).
detectron2 pastes masks with `masks >= threshold` (0.5); torchvision's reference `coco_eval.py` uses
`masks > 0.5`. The two differ only on pixels whose probability is exactly 0.5.

Segm results carry two extra keys that COCOeval ignores and calibration uses:
`class_score` (the box/class score) and, for MS R-CNN only, `mask_iou` (the predicted IoU of the
predicted class). Their `score` is the model's `mask_scores` when present (MS R-CNN), else the box
score (Mask R-CNN baseline). Segm results carry no `bbox` key: both COCO APIs would then take the box
area instead of the mask area for the small/medium/large split.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from msr.data.segmentation import encode_masks
from msr.errors import EvaluationError
from msr.evaluation.masks import encode_box_masks
from msr.files import read_json

if TYPE_CHECKING:  # torch loads with the first model output (a results file is read without it)
    import torch

# label → COCO category id: a sequence `cat_ids` of K ids (label k ↦ cat_ids[k - 1], label 0 is the
# background), or an explicit mapping {label: cat_id}.
LabelMap = Sequence[int] | Mapping[int, int]

IOU_TYPES = ("bbox", "segm")

Results = list[dict[str, Any]]
# a result list, or the path of its JSON file
ResultsLike = Results | str | os.PathLike


def load_results(results: ResultsLike) -> tuple[Results, str]:
    """Return (result list, a name for error messages) from a list or the path of a results JSON file."""
    if isinstance(results, (str, os.PathLike)):
        source = f"results file {Path(results)}"
        loaded = read_json(results, "results file", EvaluationError)
        if not isinstance(loaded, list):
            raise EvaluationError(
                f"{source}: must be a JSON list of detections [{{\"image_id\", \"category_id\", \"score\", "
                f"\"bbox\" or \"segmentation\"}}, ...], got a JSON {_json_type(loaded)}"
            )
        return loaded, source
    return results, "results"


def _json_type(value: Any) -> str:
    """Return the JSON name of a parsed value's type (object, string, number, ...)."""
    names = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def label_lookup(label_to_cat_id: LabelMap) -> tuple[np.ndarray, np.ndarray]:
    """Return (table, valid): `table[label]` is the category id of `label` where `valid[label]` is True."""
    if isinstance(label_to_cat_id, Mapping):
        pairs = {int(k): int(v) for k, v in label_to_cat_id.items()}
    else:
        pairs = {i + 1: int(c) for i, c in enumerate(label_to_cat_id)}
    size = max(pairs, default=0) + 1
    if min(pairs, default=0) < 0:
        raise EvaluationError(f"label→category mapping has a negative label: {min(pairs)}")
    table = np.zeros(size, dtype=np.int64)
    valid = np.zeros(size, dtype=bool)
    for label, cat in pairs.items():
        table[label] = cat
        valid[label] = True
    return table, valid


@dataclass
class ImageResults:
    """One image's COCO results held as a few tensors until their dicts are asked for: the evaluator
    keeps thousands of images, and per-detection dicts and lists are objects the garbage collector
    walks again and again while they pile up.

    `cat_ids` [N] category ids, `xywh` [N, 4], `scores` (box scores), `mask_scores` (the segm score)
    and `mask_ious` [N] float64 on the CPU (`mask_ious` None unless the model predicts them); `counts`:
    the compressed RLE `counts` of each mask of size `mask_size` [H, W] (None without masks).
    """

    image_id: int
    cat_ids: np.ndarray
    xywh: torch.Tensor
    scores: torch.Tensor
    mask_scores: torch.Tensor
    mask_ious: torch.Tensor | None = None
    counts: list[str] | None = None
    mask_size: tuple[int, int] = (0, 0)

    def bbox_results(self) -> list[dict[str, Any]]:
        """Return the bbox results: `image_id`, `category_id`, `bbox` xywh, `score` (the box score)."""
        image_id = self.image_id
        return [
            {"image_id": image_id, "category_id": c, "bbox": b, "score": s}
            for c, b, s in zip(self.cat_ids.tolist(), self.xywh.tolist(), self.scores.tolist())
        ]

    def segm_results(self) -> list[dict[str, Any]]:
        """Return the segm results (none without masks): `image_id`, `category_id`, `segmentation` (RLE
        `size`, `counts`), `score`, `class_score`, and `mask_iou` when the model predicts it."""
        if self.counts is None:
            return []
        image_id, (height, width) = self.image_id, self.mask_size
        results = [
            {
                "image_id": image_id,
                "category_id": c,
                "segmentation": {"size": [height, width], "counts": rle},
                "score": s,
                "class_score": cs,
            }
            for c, rle, s, cs in zip(
                self.cat_ids.tolist(), self.counts, self.mask_scores.tolist(), self.scores.tolist()
            )
        ]
        if self.mask_ious is not None:
            for res, iou in zip(results, self.mask_ious.tolist()):
                res["mask_iou"] = iou
        return results

    def results(self, iou_type: str) -> list[dict[str, Any]]:
        """Return the results of `iou_type` ('bbox' or 'segm')."""
        return self.bbox_results() if iou_type == "bbox" else self.segm_results()


def predictions_to_coco(
    output: Mapping[str, torch.Tensor],
    image_id: int,
    label_to_cat_id: LabelMap,
    mask_threshold: float = 0.5,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (bbox_results, segm_results) in COCO result format for one image's model output.

    `output`: `boxes` [N, 4] xyxy pixels of the original image, `labels` [N] contiguous (1..K),
    `scores` [N]; optionally `masks` [N, 1, H, W] (or [N, H, W]) probabilities pasted in the image or
    BoxMasks (binary crops of the boxes, cut at `mask_threshold`: their RLE is written from the crops),
    `mask_ious` [N] and `mask_scores` [N] (MS R-CNN). bbox results: `bbox` xywh, `score` = box score.
    segm results (only when `masks` is present): `segmentation` RLE of `masks >= mask_threshold`,
    `score` (`mask_scores`, else the box score), `class_score`, and `mask_iou` when the model predicts it.
    """
    record = image_results(output, image_id, label_to_cat_id, mask_threshold)
    return record.bbox_results(), record.segm_results()


def image_results(
    output: Mapping[str, torch.Tensor],
    image_id: int,
    label_to_cat_id: LabelMap,
    mask_threshold: float = 0.5,
) -> ImageResults:
    """Return one image's model output (see `predictions_to_coco`) as an ImageResults: checked, masks
    RLE-encoded, the per-detection dicts not built yet."""
    import torch

    image_id = int(image_id)
    for key in ("boxes", "labels", "scores"):
        if key not in output:
            raise EvaluationError(f"model output for image {image_id} has no key {key!r}")
    boxes = torch.as_tensor(output["boxes"]).detach()
    n = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise EvaluationError(f"output 'boxes' of image {image_id} must be [N, 4], got {tuple(boxes.shape)}")
    per_det = {}
    for key in ("labels", "scores", "mask_ious", "mask_scores"):
        if key in output and output[key] is not None:
            value = torch.as_tensor(output[key]).detach().reshape(-1)
            if value.shape[0] != n:
                raise EvaluationError(
                    f"output {key!r} of image {image_id} has {value.shape[0]} entries, 'boxes' has {n}"
                )
            per_det[key] = value.cpu()
    scores = per_det["scores"].to(torch.float64)
    xywh = boxes.to(torch.float64).cpu()
    xywh[:, 2:] -= xywh[:, :2]
    if n == 0:
        return ImageResults(image_id, np.zeros(0, dtype=np.int64), xywh, scores, scores)
    cat_ids = _category_ids(per_det["labels"], image_id, label_to_cat_id)
    record = ImageResults(image_id, cat_ids, xywh, scores, scores)
    if "masks" not in output or output["masks"] is None:
        return record
    rles = _mask_rles(output["masks"], n, image_id, mask_threshold)
    record.counts = [rle["counts"] for rle in rles]
    record.mask_size = tuple(rles[0]["size"])
    if "mask_scores" in per_det:
        record.mask_scores = per_det["mask_scores"].to(torch.float64)
    if "mask_ious" in per_det:
        record.mask_ious = per_det["mask_ious"].to(torch.float64)
    return record


def _category_ids(labels: torch.Tensor, image_id: int, label_to_cat_id: LabelMap) -> np.ndarray:
    """Return the category id of each of `labels` [N] (int64), or raise EvaluationError naming the
    labels the map does not know."""
    import torch

    labels = labels.to(torch.int64).numpy()
    table, valid = label_lookup(label_to_cat_id)
    known = (labels >= 0) & (labels < len(table))
    known[known] = valid[labels[known]]
    if not known.all():
        bad = sorted({int(x) for x in labels[~known]})
        raise EvaluationError(
            f"output 'labels' of image {image_id} holds labels {bad} that the label→category mapping "
            f"does not know (it maps labels {np.flatnonzero(valid).tolist()})"
        )
    return table[labels]


def _mask_rles(masks: Any, n: int, image_id: int, mask_threshold: float) -> list[dict[str, Any]]:
    """Return the compressed RLE of each of the `n` masks (dense probabilities or BoxMasks) of an image."""
    import torch

    from msr.models.mask_paste import BoxMasks  # torch loads with the first model output

    if isinstance(masks, BoxMasks):
        if len(masks) != n:
            raise EvaluationError(f"output 'masks' of image {image_id} holds {len(masks)} masks, 'boxes' {n}")
        if masks.threshold != mask_threshold:
            raise EvaluationError(
                f"output 'masks' of image {image_id} were cut at probability {masks.threshold}, "
                f"the evaluation asks for mask_threshold={mask_threshold}"
            )
        return encode_box_masks(masks)
    masks = torch.as_tensor(masks).detach()
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3 or masks.shape[0] != n:
        raise EvaluationError(
            f"output 'masks' of image {image_id} must be [N, 1, H, W] with N={n}, got {tuple(masks.shape)}"
        )
    binary = masks if masks.dtype == torch.bool else masks >= mask_threshold
    return encode_masks(binary)


def check_results(
    results: Any,
    iou_type: str,
    image_sizes: Mapping[int, tuple[int, int]],
    cat_ids: Collection[int],
    source: str = "results",
) -> None:
    """Raise EvaluationError (naming `source` and the key or id at fault) unless `results` are valid.

    Checks: a list of dicts with `image_id`, `category_id`, `score` and `bbox` (4 numbers) or `segmentation`
    (an RLE dict with `size` and `counts`); image ids and category ids known to the ground truth; each
    RLE `size` equal to its image's [height, width].
    """
    if iou_type not in IOU_TYPES:
        raise EvaluationError(f"unknown iou type {iou_type!r}; choose from {list(IOU_TYPES)}")
    if not isinstance(results, list):
        raise EvaluationError(f"{source}: must be a JSON list of detections, got {type(results).__name__}")
    geometry = "bbox" if iou_type == "bbox" else "segmentation"
    required = ("image_id", "category_id", "score", geometry)
    for i, res in enumerate(results):
        if not isinstance(res, Mapping):
            raise EvaluationError(f"{source}[{i}]: must be an object, got {type(res).__name__}")
        for key in required:
            if key not in res:
                raise EvaluationError(f"{source}[{i}]: missing key {key!r} needed for {iou_type} evaluation")
    unknown_images = {r["image_id"] for r in results} - set(image_sizes)
    if unknown_images:
        raise EvaluationError(
            f"{source}: 'image_id' values not in the ground truth: {sorted(unknown_images, key=str)[:5]}"
            + (" ..." if len(unknown_images) > 5 else "")
        )
    unknown_cats = {r["category_id"] for r in results} - set(cat_ids)
    if unknown_cats:
        raise EvaluationError(
            f"{source}: 'category_id' values not in the ground truth: {sorted(unknown_cats, key=str)[:5]}"
            + (" ..." if len(unknown_cats) > 5 else "")
        )
    for i, res in enumerate(results):
        score = res["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            advice = "fix what wrote the file" if source.startswith("results file") else "a diverged model?"
            message = f"{source}[{i}]: 'score' is {score!r}; scores must be finite numbers ({advice})"
            raise EvaluationError(message)
        if iou_type == "bbox":
            box = res["bbox"]
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise EvaluationError(f"{source}[{i}]: 'bbox' must be [x, y, w, h], got {box!r}")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
                raise EvaluationError(f"{source}[{i}]: 'bbox' {box!r} must hold 4 finite numbers")
            continue
        seg = res["segmentation"]
        if not isinstance(seg, Mapping) or "counts" not in seg or "size" not in seg:
            raise EvaluationError(
                f"{source}[{i}]: 'segmentation' must be an RLE dict with 'size' and 'counts' "
                f"(polygon results are not supported)"
            )
        if list(seg["size"]) != list(image_sizes[res["image_id"]]):
            raise EvaluationError(
                f"{source}[{i}]: 'segmentation' size {list(seg['size'])} differs from image "
                f"{res['image_id']}'s [height, width] {list(image_sizes[res['image_id']])}"
            )
