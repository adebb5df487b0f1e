"""Every config choice of the model composes into the part it names: a design is a class plus a YAML file."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from msr.cli.common import CONFIG_DIR
from msr.models import maskiou

HEADS = {
    "maskiou": maskiou.ConcatMaskIoUHead,
    "maskiou_multiply": maskiou.MultiplyMaskIoUHead,
    "maskiou_all_masks": maskiou.AllMasksMaskIoUHead,
    "maskiou_concat_28": maskiou.Concat28MaskIoUHead,
    "maskiou_mask_only": maskiou.MaskOnlyMaskIoUHead,
    "none": type(None),
}
TARGETS = {
    "target_class": maskiou.TargetClassTargets,
    "all_classes": maskiou.AllClassesTargets,
    "all_classes_others_zero": maskiou.AllClassesOthersZeroTargets,
    "present_classes": maskiou.PresentClassesTargets,
}


def compose_train(*overrides: str):
    """Return msr-train's composed config for the quickstart with `overrides`."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=["experiment=quickstart", *overrides])


def build(cfg, num_classes: int = 4) -> torch.nn.Module:
    """Return the detector of a composed config."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    return instantiate({**model, "num_classes": num_classes})


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_head_choice_builds_its_class(head):
    cfg = compose_train(f"head={head}")
    net = build(cfg)
    assert isinstance(net.roi_heads.maskiou_head, HEADS[head])
    if head == "none":
        assert not net.has_maskiou and cfg.model.maskiou_target is None and cfg.model.maskiou_loss is None
        return
    head_module = net.roi_heads.maskiou_head
    assert head_module.predictor.out_features == 4  # one IoU per class, background included
    # the quickstart's narrow head follows the mask head's convs and the box head's FCs
    assert head_module.convs[0].out_channels == cfg.model.mask_head_channels == 64
    assert head_module.predictor.in_features == cfg.model.box_head_dim == 256


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_training_target_choice_builds_its_class(target):
    net = build(compose_train(f"maskiou_target={target}"))
    assert type(net.roi_heads.maskiou_target) is TARGETS[target]


def test_loss_threshold_and_weight_are_keys_of_the_loss_node():
    cfg = compose_train("model.maskiou_loss.threshold=0.5", "model.maskiou_loss.loss_weight=2.0")
    loss = build(cfg).roi_heads.maskiou_loss
    assert isinstance(loss, maskiou.MaskIoULoss) and loss.threshold == 0.5 and loss.loss_weight == 2.0


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "resnet50_v2"])
def test_backbone_choices_set_the_backbone_and_layout(backbone):
    cfg = compose_train(f"backbone={backbone}")
    assert cfg.model.backbone.name == ("resnet18" if backbone == "resnet18" else "resnet50")
    assert cfg.model.layout == ("v2" if backbone.endswith("v2") else "v1")
    assert cfg.model.backbone.fpn_norm == ("bn" if backbone.endswith("v2") else None)


def test_eval_and_predict_use_the_trainer_group():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        evaluation = compose("eval")
        prediction = compose("predict", overrides=["ckpt_path=x.ckpt", "images=pictures"])
    for cfg in (evaluation, prediction):
        assert cfg.trainer._target_ == "lightning.pytorch.Trainer" and cfg.trainer.logger is False
    assert evaluation.data.from_checkpoint is True  # the checkpoint's own data config by default
    assert prediction.data.predict_images == "pictures" and prediction.data.num_workers == 0
