"""Rebuild the trained module from an msr-train checkpoint alone (no config), old checkpoints included."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from msr.errors import EvaluationError
from msr.evaluation.evaluator import COCOEvaluator
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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Return the content of an msr-train checkpoint (tensors and plain data only; nothing is executed).

    Raises FileNotFoundError for a missing file and EvaluationError naming the file for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on a damaged or foreign file: all mean the same
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EvaluationError(f"{path}: not a checkpoint written by msr-train ({reason})") from None
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("hyper_parameters"), Mapping):
        raise EvaluationError(f"{path}: not a checkpoint written by msr-train (no hyper_parameters)")
    return dict(checkpoint)


def load_module(path: str | Path, evaluator: COCOEvaluator | None = None) -> MSRModule:
    """Return the MSRModule saved in the msr-train checkpoint `path`, on the CPU, in eval mode.

    The net is rebuilt from the checkpoint's own `net_config` (or, for checkpoints written before the
    redesign, from their flat `model_cfg`); `evaluator` is attached for msr-eval.
    """
    checkpoint = read_checkpoint(path)
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
    except Exception as err:  # a config or state_dict that does not fit this version of msr
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EvaluationError(f"{path}: cannot rebuild the model from this checkpoint ({reason})") from None
    return module.eval()
