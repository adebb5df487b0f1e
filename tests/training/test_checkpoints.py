"""msr-train checkpoints rebuild their module without any config, including checkpoints written before the
model was composed of parts (flat `model_cfg`, state under `model.`)."""

from __future__ import annotations

import pytest
import torch
from support.tiny_nets import tiny_net

from msr.errors import EvaluationError
from msr.training.checkpoints import load_module
from msr.training.module import MSRModule

#: How the old flat `build_model` keyword arguments described tiny_net(3).
LEGACY_MODEL_CFG = {
    "num_classes": 3, "backbone": "resnet18", "norm": "bn", "trainable_backbone_layers": 3,
    "fpn_channels": 16,
    "layout": "v1", "box_head_dim": 32, "mask_head_channels": 16, "mask_head_convs": 1, "min_size": 64,
    "max_size": 64, "rpn_post_nms_top_n_train": 32, "box_batch_size_per_image": 16, "maskiou": True,
    "maskiou_design": "concat", "maskiou_target": "target_class", "maskiou_threshold": 0.0,
    "maskiou_loss_weight": 1.0, "maskiou_binarize_threshold": 0.5, "maskiou_detach": False,
    "maskiou_conv_channels": 16, "maskiou_num_convs": 4, "maskiou_fc_dim": 32, "backbone_weights": None,
    "maskrcnn_weights": None, "weights": None, "allow_class_mismatch": False, "freeze_except_maskiou": False,
}


def detections(module_or_net, image):
    with torch.no_grad():
        return module_or_net.eval()([image])[0]


def test_checkpoint_from_before_the_redesign_loads_with_its_weights(tmp_path):
    torch.manual_seed(0)
    net = tiny_net(3)
    path = tmp_path / "old.ckpt"
    hparams = {
        "model_cfg": LEGACY_MODEL_CFG, "optim": {"name": "sgd"}, "schedule": {}, "evaluation": {},
        "nonfinite_loss": "stop", "class_names": ["__background__", "disc", "ring"],
        "label_to_cat_id": {1: 5, 2: 9}, "data_cfg": {"_target_": "msr.data.SyntheticDataModule"},
    }
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hparams, "global_step": 4}, path)

    module = load_module(path)
    assert isinstance(module, MSRModule) and not module.training
    assert module.class_names == ["__background__", "disc", "ring"] and module.label_to_cat_id == {1: 5, 2: 9}
    assert module.hparams.data_config["_target_"] == "msr.data.datamodules.SyntheticDataModule"  # moved
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    ours, theirs = detections(module, image), detections(net, image)
    assert set(ours) == set(theirs) == {"boxes", "labels", "scores", "masks", "mask_ious", "mask_scores"}
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_checkpoint_whose_net_config_names_no_class_is_one_clear_error(tmp_path):
    torch.manual_seed(0)
    net = tiny_net(3)
    config = {"_target_": "msr.models.no_such_builder"}
    module = MSRModule(net, net_config=config, class_names=["__background__", "a", "b"])
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    with pytest.raises(EvaluationError, match="cannot rebuild the model from this checkpoint"):
        load_module(path)  # a net_config that names no real class: one clear line


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_unreadable_checkpoint_is_one_clear_error(tmp_path, content):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(EvaluationError, match=f"{path}: not a checkpoint written by msr-train"):
        load_module(path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_module(tmp_path / "missing.ckpt")
