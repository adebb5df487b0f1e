"""Load weights from local files only (never a download) and freeze parts of the model.

Three kinds of file are understood:
- "backbone": an ImageNet ResNet/ResNeXt state_dict in torchvision's format (conv1.*, layer1.*, ..., fc.*);
- "maskrcnn": a full torchvision Mask R-CNN state_dict (the layout of maskrcnn_resnet50_fpn_coco); every
  key loads, and only the MaskIoU head (roi_heads.maskiou_head.*) is left at its initialisation;
- "msr": our own checkpoints: a Lightning .ckpt (state_dict under "state_dict", keys prefixed "net.", or
  "model." in checkpoints written before the LightningModule named the model `net`) or a plain state_dict
  of MaskScoringRCNN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from msr.errors import UserError

WEIGHT_KINDS = ("backbone", "maskrcnn", "msr", "auto")
MASKIOU_PREFIX = "roi_heads.maskiou_head."
#: Prefixes of the model's keys in msr's Lightning checkpoints: today's first, then older ones.
CHECKPOINT_PREFIXES = ("net.", "model.")
#: The first bytes of a torch.save file: a zip archive, or (torch's legacy format) pickle protocol 2.
ZIP_MAGIC = b"PK\x03\x04"
LEGACY_TORCH_MAGIC = b"\x80\x02"
#: Class-specific layers, skipped on a shape mismatch when allow_class_mismatch=True.
CLASS_SPECIFIC_PREFIXES = (
    "roi_heads.box_predictor.",
    "roi_heads.mask_predictor.mask_fcn_logits.",
    "roi_heads.maskiou_head.predictor.",
)
#: The layers with one row (or four, for box regression) per class, in a torchvision Mask R-CNN state_dict.
CLASS_ROW_KEYS = (
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.cls_score.bias",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_predictor.bbox_pred.bias",
    "roi_heads.mask_predictor.mask_fcn_logits.weight",
    "roi_heads.mask_predictor.mask_fcn_logits.bias",
)
_MAX_KEYS_IN_MESSAGE = 5


class WeightsError(UserError):
    """A weights file is missing, unreadable, of the wrong format or does not fit the model."""


#: The msr-train option that allows unpickling the weights files it names (`init.*`, protocol.trunk_weights).
TRUST_PICKLE_OPTION = "init.trust_pickle"


def _first(keys, n: int = _MAX_KEYS_IN_MESSAGE) -> str:
    keys = list(keys)
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def read_state_dict(
    path: str | os.PathLike, trust_pickle: bool = False, option: str = TRUST_PICKLE_OPTION
) -> dict[str, torch.Tensor]:
    """Return the tensor state_dict stored in a local file (raw, Lightning-wrapped or {"model": ...}).

    The file is read with `weights_only=True`: tensors and plain data, nothing executed. A file that holds
    other objects is refused (WeightsError naming the file and `option`) unless `trust_pickle` is True:
    unpickling runs whatever code the file's maker put in it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on a damaged file; all mean "unreadable"
        if not holds_other_objects(err, path):
            message = f"cannot read weights file {path}: not a valid PyTorch checkpoint ({err!r})"
            raise WeightsError(message) from err
        if not trust_pickle:
            raise WeightsError(untrusted_pickle_message(path, option)) from None
        try:  # the user named this file and allowed its unpickling
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err2:
            raise WeightsError(f"cannot read weights file {path}: {err2!r}") from err2
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state_dict of tensors")
    return dict(obj)


def holds_other_objects(err: BaseException, path: str | os.PathLike) -> bool:
    """Return True when torch's `weights_only=True` load of `path` failed on objects other than tensors and
    plain data in a checkpoint torch wrote (a zip archive, or the pickle-protocol-2 file of torch's legacy
    format), rather than on a damaged or foreign file."""
    with open(path, "rb") as f:
        header = f.read(4)
    written_by_torch = header == ZIP_MAGIC or header[:2] == LEGACY_TORCH_MAGIC
    return written_by_torch and ("weights_only" in str(err) or "Weights only load failed" in str(err))


def untrusted_pickle_message(path: str | os.PathLike, option: str) -> str:
    """Return the one-line refusal of a file that only unpickling could read, naming it and `option`."""
    return (
        f"{os.fspath(path)} holds objects other than tensors and plain data: reading it would run code "
        f"stored in the file (unpickling); if you trust whoever made it, allow it with {option}=true"
    )


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _guess_kind(state: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith((*CHECKPOINT_PREFIXES, MASKIOU_PREFIX)) for k in state):
        return "msr"
    if any(k.startswith("backbone.") for k in state):
        return "maskrcnn"
    if "conv1.weight" in state:
        return "backbone"
    raise WeightsError("cannot tell the kind of this weights file; pass kind='backbone', 'maskrcnn' or 'msr'")


def _check_and_load(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    path: str,
    *,
    allowed_missing: tuple[str, ...] = (),
    ignored_unexpected: tuple[str, ...] = (),
    allow_class_mismatch: bool = False,
) -> list[str]:
    """Load `state` into `module` after checking keys and shapes; return the keys left at their init."""
    own = module.state_dict()
    # FrozenBatchNorm2d has no num_batches_tracked; BatchNorm checkpoints do. Neither matters here.
    state = {k: v for k, v in state.items() if not (k.endswith("num_batches_tracked") and k not in own)}
    unexpected = [k for k in state if k not in own and not k.startswith(ignored_unexpected)]
    if unexpected:
        raise WeightsError(f"{path}: keys not in the model: {_first(unexpected)}")
    mismatched = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    skipped: list[str] = []
    if mismatched and allow_class_mismatch:
        skipped = [k for k in mismatched if k.startswith(CLASS_SPECIFIC_PREFIXES)]
        mismatched = [k for k in mismatched if k not in skipped]
    if mismatched:
        details = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched]
        raise WeightsError(f"{path}: shape mismatch: {_first(details)}")
    state = {k: v for k, v in state.items() if k in own and k not in skipped}
    missing = [
        k
        for k in own
        if k not in state
        and k not in skipped
        and not k.startswith(allowed_missing)
        and not k.endswith("num_batches_tracked")
    ]
    if missing:
        raise WeightsError(f"{path}: keys missing from the file: {_first(missing)}")
    module.load_state_dict(state, strict=False)
    return [k for k in own if k not in state]


def select_class_rows(
    state: Mapping[str, torch.Tensor], rows: Sequence[int], path: str
) -> dict[str, torch.Tensor]:
    """Return a Mask R-CNN state_dict whose class-specific layers keep only the classes `rows`, in that
    order: class k of the result is class rows[k] of the file (rows[0] is the background).

    torchvision's COCO checkpoints index their 91 classes by COCO category id; with rows
    `[0, *category ids of labels 1..K]` they fit a model of msr's contiguous labels.
    """
    out = dict(state)
    index = torch.as_tensor(list(rows), dtype=torch.long)
    for key in CLASS_ROW_KEYS:
        if key not in out:
            raise WeightsError(f"{path}: no {key} to select classes from (not a Mask R-CNN state_dict?)")
        value = out[key]
        per_class = 4 if key.startswith("roi_heads.box_predictor.bbox_pred") else 1
        classes = value.shape[0] // per_class
        if int(index.max()) >= classes:
            raise WeightsError(f"{path}: {key} holds {classes} classes; class {int(index.max())} asked for")
        chosen = (index[:, None] * per_class + torch.arange(per_class)).reshape(-1)
        out[key] = value.index_select(0, chosen)
    return out


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    kind: str = "auto",
    allow_class_mismatch: bool = False,
    class_rows: Sequence[int] | None = None,
    trust_pickle: bool = False,
) -> list[str]:
    """Load a local weights file into a MaskScoringRCNN; return the names left at their initialisation.

    `class_rows`: the file's classes to keep for the model's classes, in order (`select_class_rows`), for a
    torchvision Mask R-CNN file whose classes are numbered otherwise. `trust_pickle`: see read_state_dict.
    Raises WeightsError naming the file and the first offending keys on any mismatch.
    """
    if kind not in WEIGHT_KINDS:
        raise WeightsError(f"unknown weights kind {kind!r}; choose one of {', '.join(WEIGHT_KINDS)}")
    path = os.fspath(path)
    state = read_state_dict(path, trust_pickle=trust_pickle)
    if kind == "auto":
        kind = _guess_kind(state)
    if class_rows is not None:
        if kind != "maskrcnn":
            raise WeightsError(f"{path}: classes can be selected from a torchvision Mask R-CNN file only")
        state = select_class_rows(state, class_rows, path)
    if kind == "backbone":
        body = model.backbone.body
        return _check_and_load(body, state, path, ignored_unexpected=("fc.",))
    if kind == "maskrcnn":
        return _check_and_load(
            model, state, path, allowed_missing=(MASKIOU_PREFIX,), allow_class_mismatch=allow_class_mismatch
        )
    for prefix in CHECKPOINT_PREFIXES:
        state = _strip_prefix(state, prefix)
    # an msr Mask R-CNN checkpoint (no MaskIoU head) loads into MS R-CNN: only the head stays at its init
    no_head = not any(k.startswith(MASKIOU_PREFIX) for k in state)
    allowed = (MASKIOU_PREFIX,) if no_head else ()
    return _check_and_load(
        model, state, path, allowed_missing=allowed, allow_class_mismatch=allow_class_mismatch
    )


def freeze_all_but_maskiou(model: nn.Module) -> int:
    """Freeze every parameter except the MaskIoU head's; return the number of trainable parameters left.

    With norm="bn" the BatchNorm running statistics of the frozen part still update in train mode; use
    norm="frozen_bn" (the default for pretrained weights) to keep them fixed too.
    """
    head = getattr(model.roi_heads, "maskiou_head", None)
    if head is None:
        raise ValueError("the model has no MaskIoU head to train (it is a plain Mask R-CNN)")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in head.parameters():
        parameter.requires_grad_(True)
    return sum(p.numel() for p in head.parameters())
