"""Rebuild the trained module from an msr-train checkpoint alone (no config), old checkpoints included."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from msr.errors import EvaluationError
from msr.evaluation.evaluator import COCOEvaluator
from msr.layout import existing_checkpoint
from msr.models.weights import ZIP_MAGIC, holds_other_objects, untrusted_pickle_message
from msr.training.module import MSRModule

#: Input designs and training targets of checkpoints written before the model was composed of parts.
LEGACY_HEADS = {
    "concat": "ConcatMaskIoUHead",
    "multiply": "MultiplyMaskIoUHead",
    "all_masks": "AllMasksMaskIoUHead",
    "concat_28": "Concat28MaskIoUHead",
}
LEGACY_TARGETS = {
    "target_class": "TargetClassTargets",
    "all_classes_zero": "AllClassesOthersZeroTargets",  # what that name meant then
    "present_classes": "PresentClassesTargets",
}
#: Data modules of those checkpoints' data configs (they lived in msr.data then).
LEGACY_DATA_MODULES = ("CocoDataModule", "Coco2017DataModule", "SyntheticDataModule", "ViaDataModule")
#: Keys of the old flat model config that only said where weights came from.
LEGACY_INIT_KEYS = (
    "backbone_weights",
    "maskrcnn_weights",
    "weights",
    "allow_class_mismatch",
    "freeze_except_maskiou",
)


def legacy_net_config(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Return the composed `model` config of a checkpoint written before the redesign (flat build_model
    keyword arguments: backbone, norm, maskiou, maskiou_design, maskiou_target, ...)."""
    f = {k: v for k, v in flat.items() if k not in LEGACY_INIT_KEYS}
    layout = f.setdefault("layout", "v1")
    backbone = {
        "_target_": "msr.models.build_resnet_fpn_backbone",
        "name": f.pop("backbone", "resnet50"),
        "norm": f.pop("norm", "frozen_bn"),
        "trainable_layers": f.pop("trainable_backbone_layers", 3),
        "fpn_channels": f.pop("fpn_channels", 256),
        "fpn_norm": "bn" if layout == "v2" else None,
    }
    head = {
        "_target_": f"msr.models.maskiou.{LEGACY_HEADS[f.pop('maskiou_design', 'concat')]}",
        "_partial_": True,
        "conv_channels": f.pop("maskiou_conv_channels", 256),
        "num_convs": f.pop("maskiou_num_convs", 4),
        "fc_dim": f.pop("maskiou_fc_dim", 1024),
    }
    target = {
        "_target_": f"msr.models.maskiou.{LEGACY_TARGETS[f.pop('maskiou_target', 'target_class')]}",
        "binarize_threshold": f.pop("maskiou_binarize_threshold", 0.5),
    }
    loss = {
        "_target_": "msr.models.maskiou.MaskIoULoss",
        "loss_weight": f.pop("maskiou_loss_weight", 1.0),
        "threshold": f.pop("maskiou_threshold", 0.0),
    }
    with_head = bool(f.pop("maskiou", True))
    return {
        "_target_": "msr.models.build_detector",
        "_convert_": "all",
        **f,
        "backbone": backbone,
        "maskiou_head": head if with_head else None,
        "maskiou_target": target if with_head else None,
        "maskiou_loss": loss if with_head else None,
    }


def legacy_data_config(data_cfg: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return the data config of a checkpoint written before the redesign, its data module's new path."""
    if data_cfg is None:
        return None
    config = dict(data_cfg)
    name = str(config.get("_target_", "")).removeprefix("msr.data.")
    if name in LEGACY_DATA_MODULES:
        config["_target_"] = f"msr.data.datamodules.{name}"
    return config


#: The msr-eval and msr-predict option that allows unpickling the checkpoint they are given.
TRUST_PICKLE_KEY = "trust_pickle"


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    """Return the content of an msr-train checkpoint: tensors and plain data only, nothing executed.

    A file holding other objects is refused, naming the file and the `trust_pickle` option, unless
    `trust_pickle` is True (then it is unpickled: whatever code it holds runs). Raises FileNotFoundError
    for a missing file and EvaluationError naming the file for anything else.
    """
    path = existing_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on a damaged or foreign file: all mean the same
        if not holds_other_objects(err, path):
            message = f"{path}: not a checkpoint written by msr-train ({_load_failure(path)})"
            raise EvaluationError(f"{message}; use another checkpoint") from None
        if not trust_pickle:
            raise EvaluationError(untrusted_pickle_message(path, TRUST_PICKLE_KEY)) from None
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # the user allowed it
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("hyper_parameters"), Mapping):
        raise EvaluationError(f"{path}: not a checkpoint written by msr-train (no hyper_parameters)")
    return dict(checkpoint)


def _load_failure(path: Path) -> str:
    """Return why torch could not load the file `path` (not for want of trust): not a zip archive, or a
    damaged one."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != ZIP_MAGIC:  # msr-train's checkpoints are zip archives
        return "the file is not a PyTorch checkpoint: a text file or another format"
    return "the file is truncated or damaged: it is not a complete PyTorch zip archive"


def check_resumable(path: str | Path, module: MSRModule) -> None:
    """Raise EvaluationError unless the msr-train checkpoint `path` can resume training `module`:
    readable, with the training state, and holding the same tensors, of the same shapes, as `module`."""
    checkpoint = read_checkpoint(path)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise EvaluationError(
            f"{path}: holds weights only, not a training state to resume; start from its weights with "
            f"init.weights={path} instead of ckpt_path"
        )
    saved = checkpoint.get("state_dict") or {}
    here = module.state_dict()
    differ = [k for k in here if k in saved and tuple(saved[k].shape) != tuple(here[k].shape)]
    missing = [k for k in here if k not in saved]
    extra = [k for k in saved if k not in here]
    if not differ and not missing and not extra:
        return
    trained = checkpoint["hyper_parameters"].get("class_names") or []
    names = module.hparams.get("class_names") or []
    if differ:
        key = differ[0]
        detail = f"{key} is {list(saved[key].shape)} there and {list(here[key].shape)} here"
    elif missing:
        detail = f"{len(missing)} tensors of this model are not in it (first: {missing[0]})"
    else:
        detail = f"it holds {len(extra)} tensors this model does not have (first: {extra[0]})"
    classes = ""
    if trained and names and list(trained) != list(names):
        classes = f"; it was trained on {len(trained) - 1} categories, this data has {len(names) - 1}"
    raise EvaluationError(
        f"{path}: cannot resume this run from it, its model differs ({detail}{classes}); resume with the "
        f"data and model it was trained with, or start from its weights with init.weights={path} "
        f"init.allow_class_mismatch=true"
    )


def load_module(
    path: str | Path, evaluator: COCOEvaluator | None = None, trust_pickle: bool = False
) -> MSRModule:
    """Return the MSRModule saved in the msr-train checkpoint `path`, on the CPU, in eval mode.

    The net is rebuilt from the checkpoint's own `net_config` (or, for checkpoints written before the
    redesign, from their flat `model_cfg`); `evaluator` is attached for msr-eval. `trust_pickle`: see
    read_checkpoint.
    """
    checkpoint = read_checkpoint(path, trust_pickle=trust_pickle)
    hparams = dict(checkpoint["hyper_parameters"])
    state = dict(checkpoint.get("state_dict") or {})
    if "net_config" not in hparams and "model_cfg" in hparams:  # written before the redesign
        hparams["net_config"] = legacy_net_config(hparams.pop("model_cfg"))
        hparams["data_config"] = legacy_data_config(hparams.pop("data_cfg", None))
        state = {f"net.{k.removeprefix('model.')}": v for k, v in state.items()}
    if not hparams.get("net_config"):
        raise EvaluationError(f"{path}: not a checkpoint written by msr-train (no net_config)")
    try:
        net = instantiate(hparams["net_config"])
        module = MSRModule(
            net,
            evaluator=evaluator,
            net_config=hparams["net_config"],
            class_names=hparams.get("class_names"),
            label_to_cat_id=hparams.get("label_to_cat_id"),
            data_config=hparams.get("data_config"),
            nonfinite_loss=hparams.get("nonfinite_loss", "stop"),
        )
        module.load_state_dict(state)
        module.checkpoint_step = int(checkpoint.get("global_step") or 0)
    except Exception as err:  # a config or state_dict that does not fit this version of msr
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EvaluationError(f"{path}: cannot rebuild the model from this checkpoint ({reason})") from None
    return module.eval()
