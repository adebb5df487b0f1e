"""The checkpoint files themselves, in process: what read_checkpoint accepts and refuses (whole messages),
what check_resumable says of every kind of mismatch, what load_module rebuilds (modern and pre-redesign
checkpoints), the legacy config conversions key by key, and AtomicCheckpointIO's atomic writes.

The models are tiny (`torch.nn.Linear` nets in an MSRModule, or hand-made dicts): the whole file runs in
a few seconds. The CLI tests run these functions in subprocesses; these tests pin their exact behaviour."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import torch
import torch.serialization
from support.tiny_nets import tiny_net
from test_checkpoints import LEGACY_MODEL_CFG

from msr.errors import EvaluationError
from msr.evaluation.evaluator import COCOEvaluator
from msr.training.checkpoint_io import AtomicCheckpointIO, stale_temporaries
from msr.training.checkpoints import (
    LEGACY_HEADS,
    LEGACY_TARGETS,
    TRUST_PICKLE_KEY,
    check_resumable,
    legacy_data_config,
    legacy_net_config,
    load_module,
    read_checkpoint,
)
from msr.training.module import MSRModule

#: The net of the hand-made modern checkpoints: a Linear layer (state `net.weight` [3, 2], `net.bias` [3]).
LINEAR = {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 3}
CLASSES = ["__background__", "disc", "ring"]


def error_text(call, *args, **kwargs) -> str:
    """Return the message of the EvaluationError that `call(*args, **kwargs)` raises."""
    with pytest.raises(EvaluationError) as info:
        call(*args, **kwargs)
    return str(info.value)


def linear_state(out_features: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return the state of MSRModule(Linear(2, out_features)): `net.weight` and `net.bias`."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "net.weight": torch.randn(out_features, 2, generator=gen),
        "net.bias": torch.randn(out_features, generator=gen),
    }


def save(path: Path, content, cuda_tagged: bool = False) -> Path:
    """torch.save `content` to `path`; with `cuda_tagged`, its storages are tagged as on `cuda:0` (as a
    checkpoint written on a GPU), which only a load with map_location="cpu" reads on a CPU-only machine
    (and which a GPU machine would otherwise load on the GPU). Return `path`."""
    if not cuda_tagged:
        torch.save(content, path)
        return path
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(content, path)
    return path


class FileMaker:
    """An object whose unpickling creates the file `path` (as any code a pickle holds would run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def untrusted(path: Path, content: dict, cuda_tagged: bool = False) -> tuple[Path, Path]:
    """Write `content` plus an object whose unpickling creates <path>.unpickled to `path`; return both
    paths."""
    marker = path.with_suffix(".unpickled")
    return save(path, {**content, "payload": FileMaker(marker)}, cuda_tagged), marker


def pickle_refusal(path: Path) -> str:
    """Return the whole refusal message of a checkpoint that only unpickling can read."""
    return (
        f"{path} holds objects other than tensors and plain data: reading it would run code stored in the "
        f"file (unpickling); if you trust whoever made it, allow it with trust_pickle=true"
    )


# --- read_checkpoint ---------------------------------------------------------------------------------


def test_read_checkpoint_returns_the_whole_content_as_a_dict_with_tensors_on_the_cpu(tmp_path):
    """A checkpoint written on a GPU (storages tagged cuda:0) is read onto the CPU."""
    content = {"hyper_parameters": {"class_names": CLASSES}, "state_dict": linear_state(), "global_step": 5}
    path = save(tmp_path / "gpu.ckpt", content, cuda_tagged=True)
    checkpoint = read_checkpoint(path)
    assert type(checkpoint) is dict and set(checkpoint) == {"hyper_parameters", "state_dict", "global_step"}
    assert checkpoint["hyper_parameters"] == {"class_names": CLASSES} and checkpoint["global_step"] == 5
    for key, tensor in content["state_dict"].items():
        assert checkpoint["state_dict"][key].device == torch.device("cpu")
        assert torch.equal(checkpoint["state_dict"][key], tensor)
    assert read_checkpoint(str(path))["global_step"] == 5  # a str path too


def test_checkpoint_holding_other_objects_is_refused_by_default_without_running_them(tmp_path):
    path, marker = untrusted(tmp_path / "other.ckpt", {"hyper_parameters": {}})
    assert error_text(read_checkpoint, path) == pickle_refusal(path)
    assert error_text(read_checkpoint, path, trust_pickle=False) == pickle_refusal(path)
    assert not marker.exists()
    assert TRUST_PICKLE_KEY == "trust_pickle"


def test_a_legacy_format_file_holding_other_objects_is_refused_as_such_and_read_when_trusted(tmp_path):
    """torch's legacy (non-zip) format: the same refusal naming trust_pickle, not "another format"."""
    path, marker = tmp_path / "legacy.ckpt", tmp_path / "legacy.unpickled"
    content = {"hyper_parameters": {"class_names": CLASSES}, "payload": FileMaker(marker)}
    torch.save(content, path, _use_new_zipfile_serialization=False)
    assert error_text(read_checkpoint, path) == pickle_refusal(path)
    assert not marker.exists()
    assert read_checkpoint(path, trust_pickle=True)["hyper_parameters"] == {"class_names": CLASSES}
    assert marker.exists()


def test_refusal_holds_even_when_the_environment_forces_torch_to_unpickle(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns torch.load's default into unpickling: read_checkpoint asks
    for weights_only explicitly, so it still refuses."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path, marker = untrusted(tmp_path / "other.ckpt", {"hyper_parameters": {}})
    assert error_text(read_checkpoint, path) == pickle_refusal(path)
    assert not marker.exists()


def test_trusted_checkpoint_is_unpickled_onto_the_cpu(tmp_path):
    content = {"hyper_parameters": {"a": 1}, "state_dict": linear_state()}
    path, marker = untrusted(tmp_path / "other.ckpt", content, cuda_tagged=True)
    checkpoint = read_checkpoint(path, trust_pickle=True)
    checkpoint.pop("payload").close()  # the file object that unpickling opened
    assert marker.exists()  # the pickle's code ran: the user allowed it
    assert type(checkpoint) is dict and set(checkpoint) == {"hyper_parameters", "state_dict"}
    assert checkpoint["hyper_parameters"] == {"a": 1}
    for key, tensor in content["state_dict"].items():
        assert checkpoint["state_dict"][key].device == torch.device("cpu")
        assert torch.equal(checkpoint["state_dict"][key], tensor)


def test_text_and_empty_files_are_not_pytorch_checkpoints(tmp_path):
    for name, content in [("text.ckpt", b"a text file\nnot a checkpoint\n"), ("empty.ckpt", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        assert error_text(read_checkpoint, path) == (
            f"{path}: not a checkpoint written by msr-train (the file is not a PyTorch checkpoint: a text "
            f"file or another format); use another checkpoint"
        )


def test_truncated_checkpoint_is_named_truncated_or_damaged(tmp_path):
    whole = save(tmp_path / "whole.ckpt", {"hyper_parameters": {}, "state_dict": linear_state()})
    for size in (4, 100, whole.stat().st_size - 20):
        path = tmp_path / f"truncated_{size}.ckpt"
        path.write_bytes(whole.read_bytes()[:size])
        assert path.read_bytes()[:4] == b"PK\x03\x04"
        assert error_text(read_checkpoint, path, trust_pickle=True) == (
            f"{path}: not a checkpoint written by msr-train (the file is truncated or damaged: it is not a "
            f"complete PyTorch zip archive); use another checkpoint"
        )


@pytest.mark.parametrize(
    "content",
    [{"state_dict": {}}, {"hyper_parameters": None}, {"hyper_parameters": [1, 2]}, [1, 2], torch.ones(2)],
    ids=["no_hyper_parameters", "none", "list", "a_list", "a_tensor"],
)
def test_content_without_hyper_parameters_is_not_an_msr_checkpoint(tmp_path, content):
    path = save(tmp_path / "foreign.ckpt", content)
    message = f"{path}: not a checkpoint written by msr-train (no hyper_parameters)"
    assert error_text(read_checkpoint, path) == message
    assert error_text(read_checkpoint, path, trust_pickle=True) == message


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^checkpoint not found: {re.escape(str(tmp_path))}"):
        read_checkpoint(tmp_path / "missing.ckpt")


# --- check_resumable ---------------------------------------------------------------------------------


def linear_module(out_features: int = 3, class_names: list[str] | None = CLASSES) -> MSRModule:
    """Return MSRModule(Linear(2, out_features)) with `class_names`."""
    return MSRModule(torch.nn.Linear(2, out_features), class_names=class_names)


def training_checkpoint(path: Path, state: dict | None, class_names=CLASSES, **drop: bool) -> Path:
    """Write a training checkpoint (optimizer states, loops) holding `state` (None: no state_dict key);
    drop=True keys (optimizer_states, loops) are left out. Return `path`."""
    content = {
        "hyper_parameters": {"class_names": class_names},
        "optimizer_states": [{}],
        "loops": {"fit_loop": {}},
        "global_step": 3,
    }
    if state is not None:
        content["state_dict"] = state
    for key in drop:
        del content[key]
    return save(path, content)


def mismatch(path: Path, detail: str) -> str:
    return (
        f"{path}: cannot resume this run from it, its model differs ({detail}); resume with the data and "
        f"model it was trained with, or start from its weights with init.weights={path} "
        f"init.allow_class_mismatch=true"
    )


def test_checkpoint_of_the_same_model_is_resumable(tmp_path):
    path = training_checkpoint(tmp_path / "last.ckpt", linear_state())
    assert check_resumable(path, linear_module()) is None
    assert check_resumable(str(path), linear_module(class_names=None)) is None


@pytest.mark.parametrize(
    "drop",
    [("optimizer_states",), ("loops",), ("optimizer_states", "loops")],
    ids=["no_optim", "no_loops", "both"],
)
def test_weights_only_checkpoint_is_not_resumable(tmp_path, drop):
    path = training_checkpoint(tmp_path / "weights.ckpt", linear_state(), **dict.fromkeys(drop, True))
    assert error_text(check_resumable, path, linear_module()) == (
        f"{path}: holds weights only, not a training state to resume; start from its weights with "
        f"init.weights={path} instead of ckpt_path"
    )


def test_resume_never_unpickles_the_checkpoint(tmp_path):
    content = {"hyper_parameters": {}, "optimizer_states": [], "loops": {}, "state_dict": linear_state()}
    path, marker = untrusted(tmp_path / "other.ckpt", content)
    assert error_text(check_resumable, path, linear_module()) == pickle_refusal(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        # both tensors differ: the first of this model's is named; same class names add nothing
        (linear_state(out_features=4), "net.weight is [4, 2] there and [3, 2] here"),
        # another shape is named before missing (net.bias) and extra (net.other) tensors
        (
            {"net.weight": torch.zeros(5, 2), "net.other": torch.zeros(1)},
            "net.weight is [5, 2] there and [3, 2] here",
        ),
        ({"net.weight": torch.zeros(3, 2), "net.bias": torch.zeros(7)}, "net.bias is [7] there and [3] here"),
        ({}, "2 tensors of this model are not in it (first: net.weight)"),
        (None, "2 tensors of this model are not in it (first: net.weight)"),  # no state_dict at all
        # missing tensors are named before extra ones
        (
            {"net.weight": torch.zeros(3, 2), "net.more": torch.zeros(1)},
            "1 tensors of this model are not in it (first: net.bias)",
        ),
        (
            {**linear_state(), "net.extra_a": torch.zeros(1), "net.extra_b": torch.zeros(2)},
            "it holds 2 tensors this model does not have (first: net.extra_a)",
        ),
    ],
    ids=["both_shapes", "shape_first", "bias_only", "empty_state", "no_state_dict", "missing_first", "extra"],
)
def test_the_first_tensor_mismatch_is_named(tmp_path, state, detail):
    path = training_checkpoint(tmp_path / "last.ckpt", state)
    assert error_text(check_resumable, path, linear_module()) == mismatch(path, detail)


def test_other_classes_are_counted_in_the_mismatch(tmp_path):
    trained = ["__background__", "a", "b", "c", "d"]
    path = training_checkpoint(tmp_path / "last.ckpt", linear_state(out_features=5), class_names=trained)
    message = error_text(check_resumable, path, linear_module(class_names=["__background__", "a", "b"]))
    detail = "net.weight is [5, 2] there and [3, 2] here; it was trained on 4 categories, this data has 2"
    assert message == mismatch(path, detail)


@pytest.mark.parametrize(
    ("trained", "here"),
    [(None, CLASSES), ([], CLASSES), (CLASSES, None), (CLASSES, CLASSES)],
    ids=["none_there", "empty_there", "none_here", "same"],
)
def test_classes_are_not_mentioned_unless_both_sides_name_different_ones(tmp_path, trained, here):
    path = training_checkpoint(tmp_path / "last.ckpt", linear_state(out_features=4), class_names=trained)
    message = error_text(check_resumable, path, linear_module(class_names=here))
    assert message == mismatch(path, "net.weight is [4, 2] there and [3, 2] here")


# --- load_module -------------------------------------------------------------------------------------


def modern_checkpoint(path: Path, state: dict | None = None, **hparams) -> Path:
    """Write the checkpoint of MSRModule(Linear(2, 3)) (LINEAR net_config), hyper_parameters updated by
    `hparams` (a None value removes the key); return `path`."""
    full = {
        "net_config": LINEAR,
        "class_names": CLASSES,
        "label_to_cat_id": {1: 5, 2: 9},
        "data_config": {"_target_": "msr.data.datamodules.SyntheticDataModule", "num_images": 4},
        "nonfinite_loss": "skip",
    }
    full.update(hparams)
    content = {
        "hyper_parameters": {k: v for k, v in full.items() if v is not None},
        "state_dict": linear_state() if state is None else state,
        "global_step": 7,
    }
    return save(path, content)


def assert_linear_weights(module: MSRModule, state: dict[str, torch.Tensor]) -> None:
    assert set(module.state_dict()) == set(state)
    for key, tensor in module.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_load_module_rebuilds_the_module_with_its_hyper_parameters(tmp_path):
    path = modern_checkpoint(tmp_path / "last.ckpt")
    evaluator = COCOEvaluator()
    module = load_module(path, evaluator=evaluator)
    assert isinstance(module, MSRModule) and not module.training
    assert isinstance(module.net, torch.nn.Linear) and module.net.out_features == 3
    assert_linear_weights(module, linear_state())
    assert module.evaluator is evaluator
    assert module.checkpoint_step == 7
    assert module.class_names == CLASSES and module.label_to_cat_id == {1: 5, 2: 9}
    assert module.hparams.net_config == LINEAR
    assert module.hparams.data_config == {
        "_target_": "msr.data.datamodules.SyntheticDataModule",
        "num_images": 4,
    }
    assert module.hparams.nonfinite_loss == "skip"
    assert load_module(str(path)).evaluator is None


def test_load_module_defaults_of_an_older_checkpoint(tmp_path):
    """No nonfinite_loss, class names, label map, data config nor global step: their defaults."""
    path = tmp_path / "old.ckpt"
    save(path, {"hyper_parameters": {"net_config": LINEAR}, "state_dict": linear_state()})
    module = load_module(path)
    assert module.hparams.nonfinite_loss == "stop"
    assert module.checkpoint_step == 0
    assert module.class_names is None and module.label_to_cat_id is None
    assert module.hparams.data_config is None
    assert_linear_weights(module, linear_state())


def test_a_checkpoint_at_step_zero_says_step_zero(tmp_path):
    path = tmp_path / "first.ckpt"
    save(path, {"hyper_parameters": {"net_config": LINEAR}, "state_dict": linear_state(), "global_step": 0})
    assert load_module(path).checkpoint_step == 0


def test_net_config_wins_over_a_stale_legacy_model_cfg(tmp_path):
    """A checkpoint with both a net_config and an old model_cfg is a modern one: model_cfg is ignored."""
    path = modern_checkpoint(tmp_path / "last.ckpt", model_cfg={"maskiou_design": "no_such_design"})
    module = load_module(path)
    assert module.hparams.net_config == LINEAR
    assert_linear_weights(module, linear_state())


def test_load_module_refuses_pickles_unless_trusted(tmp_path):
    state = linear_state()
    content = {"hyper_parameters": {"net_config": LINEAR}, "state_dict": state, "global_step": 2}
    path, marker = untrusted(tmp_path / "other.ckpt", content)
    assert error_text(load_module, path) == pickle_refusal(path)
    assert error_text(load_module, path, trust_pickle=False) == pickle_refusal(path)
    assert not marker.exists()
    module = load_module(path, trust_pickle=True)
    assert marker.exists() and module.checkpoint_step == 2
    assert_linear_weights(module, state)


@pytest.mark.parametrize("net_config", [None, {}], ids=["absent", "empty"])
def test_checkpoint_without_net_config_is_refused(tmp_path, net_config):
    path = modern_checkpoint(tmp_path / "last.ckpt", net_config=net_config)
    assert error_text(load_module, path) == f"{path}: not a checkpoint written by msr-train (no net_config)"


def rebuild_failure(path: Path, reason: str) -> str:
    return f"{path}: cannot rebuild the model from this checkpoint ({reason})"


@pytest.mark.parametrize(
    "state",
    [
        {"net.weight": torch.zeros(4, 2), "net.bias": torch.zeros(4)},
        {"net.weight": torch.zeros(3, 2)},
        {**linear_state(), "net.extra": torch.zeros(1)},
    ],
    ids=["other_shapes", "missing_bias", "extra_tensor"],
)
def test_state_that_does_not_fit_the_net_exactly_is_refused(tmp_path, state):
    """load_state_dict is strict: other shapes, missing or extra tensors all fail, with the first line of
    torch's message."""
    path = modern_checkpoint(tmp_path / "last.ckpt", state=state)
    reason = "Error(s) in loading state_dict for MSRModule:"
    assert error_text(load_module, path) == rebuild_failure(path, reason)


def test_hyper_parameter_msr_rejects_is_one_line(tmp_path):
    path = modern_checkpoint(tmp_path / "last.ckpt", nonfinite_loss="ignore")
    reason = "nonfinite_loss must be one of ('stop', 'skip'), got 'ignore'"
    assert error_text(load_module, path) == rebuild_failure(path, reason)


class SilentFailure(torch.nn.Module):
    """A net whose state loading fails with an exception without a message."""

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        raise RuntimeError()


def test_failure_without_a_message_is_named_by_its_type(tmp_path):
    path = modern_checkpoint(tmp_path / "last.ckpt", net_config={"_target_": f"{__name__}.SilentFailure"})
    assert error_text(load_module, path) == rebuild_failure(path, "RuntimeError")


def test_legacy_checkpoint_without_data_config_loads(tmp_path):
    torch.manual_seed(0)
    net = tiny_net(3)
    path = tmp_path / "old.ckpt"
    hparams = {"model_cfg": LEGACY_MODEL_CFG, "class_names": CLASSES}
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    save(path, {"state_dict": state, "hyper_parameters": hparams, "global_step": 4})
    module = load_module(path)
    assert module.hparams.data_config is None and module.checkpoint_step == 4
    assert module.hparams.net_config == legacy_net_config(LEGACY_MODEL_CFG)
    assert_linear_weights(module, {f"net.{k}": v for k, v in net.state_dict().items()})


# --- legacy conversions ------------------------------------------------------------------------------

#: legacy_net_config({}): the defaults of the old flat build_model.
LEGACY_DEFAULTS = {
    "_target_": "msr.models.build_detector",
    "_convert_": "all",
    "layout": "v1",
    "backbone": {
        "_target_": "msr.models.build_resnet_fpn_backbone",
        "name": "resnet50",
        "norm": "frozen_bn",
        "trainable_layers": 3,
        "fpn_channels": 256,
        "fpn_norm": None,
    },
    "maskiou_head": {
        "_target_": "msr.models.maskiou.ConcatMaskIoUHead",
        "_partial_": True,
        "conv_channels": 256,
        "num_convs": 4,
        "fc_dim": 1024,
    },
    "maskiou_target": {"_target_": "msr.models.maskiou.TargetClassTargets", "binarize_threshold": 0.5},
    "maskiou_loss": {"_target_": "msr.models.maskiou.MaskIoULoss", "loss_weight": 1.0, "threshold": 0.0},
}


def test_legacy_net_config_defaults_are_the_old_build_model_defaults():
    config = legacy_net_config({})
    assert config == LEGACY_DEFAULTS
    assert [type(config["maskiou_loss"][k]) for k in ("loss_weight", "threshold")] == [float, float]


def test_legacy_net_config_converts_every_key():
    flat = {
        "num_classes": 4,
        "backbone": "resnet18",
        "norm": "bn",
        "trainable_backbone_layers": 5,
        "fpn_channels": 64,
        "layout": "v2",
        "box_head_dim": 32,
        "maskiou": True,
        "maskiou_design": "multiply",
        "maskiou_target": "present_classes",
        "maskiou_threshold": 0.25,
        "maskiou_loss_weight": 2.5,
        "maskiou_binarize_threshold": 0.4,
        "maskiou_detach": True,
        "maskiou_conv_channels": 16,
        "maskiou_num_convs": 2,
        "maskiou_fc_dim": 32,
        "backbone_weights": "b.pth",
        "maskrcnn_weights": "m.pth",
        "weights": "w.ckpt",
        "allow_class_mismatch": True,
        "freeze_except_maskiou": True,
    }
    original = dict(flat)
    assert legacy_net_config(flat) == {
        "_target_": "msr.models.build_detector",
        "_convert_": "all",
        "num_classes": 4,
        "layout": "v2",
        "box_head_dim": 32,
        "maskiou_detach": True,
        "backbone": {
            "_target_": "msr.models.build_resnet_fpn_backbone",
            "name": "resnet18",
            "norm": "bn",
            "trainable_layers": 5,
            "fpn_channels": 64,
            "fpn_norm": "bn",
        },
        "maskiou_head": {
            "_target_": "msr.models.maskiou.MultiplyMaskIoUHead",
            "_partial_": True,
            "conv_channels": 16,
            "num_convs": 2,
            "fc_dim": 32,
        },
        "maskiou_target": {"_target_": "msr.models.maskiou.PresentClassesTargets", "binarize_threshold": 0.4},
        "maskiou_loss": {"_target_": "msr.models.maskiou.MaskIoULoss", "loss_weight": 2.5, "threshold": 0.25},
    }
    assert flat == original  # the checkpoint's own config is left as it was


def test_legacy_net_config_v2_layout_alone_gives_a_bn_fpn():
    config = legacy_net_config({"layout": "v2"})
    backbone = {**LEGACY_DEFAULTS["backbone"], "fpn_norm": "bn"}
    assert config == {**LEGACY_DEFAULTS, "layout": "v2", "backbone": backbone}


@pytest.mark.parametrize("maskiou", [False, 0, None])
def test_legacy_mask_rcnn_without_maskiou_has_no_maskiou_parts(maskiou):
    config = legacy_net_config({"maskiou": maskiou, "maskiou_design": "all_masks", "maskiou_fc_dim": 8})
    assert config == {**LEGACY_DEFAULTS, "maskiou_head": None, "maskiou_target": None, "maskiou_loss": None}


@pytest.mark.parametrize("design", sorted(LEGACY_HEADS))
def test_legacy_designs_name_real_heads(design):
    target = legacy_net_config({"maskiou_design": design})["maskiou_head"]["_target_"]
    module, _, name = target.rpartition(".")
    assert module == "msr.models.maskiou" and name == LEGACY_HEADS[design]
    assert isinstance(getattr(importlib.import_module(module), name), type)


@pytest.mark.parametrize("variant", sorted(LEGACY_TARGETS))
def test_legacy_targets_name_real_target_variants(variant):
    target = legacy_net_config({"maskiou_target": variant})["maskiou_target"]["_target_"]
    module, _, name = target.rpartition(".")
    assert module == "msr.models.maskiou" and name == LEGACY_TARGETS[variant]
    assert isinstance(getattr(importlib.import_module(module), name), type)


def test_legacy_table_entries():
    assert LEGACY_HEADS == {
        "concat": "ConcatMaskIoUHead",
        "multiply": "MultiplyMaskIoUHead",
        "all_masks": "AllMasksMaskIoUHead",
        "concat_28": "Concat28MaskIoUHead",
    }
    assert LEGACY_TARGETS == {
        "target_class": "TargetClassTargets",
        "all_classes_zero": "AllClassesOthersZeroTargets",
        "present_classes": "PresentClassesTargets",
    }


@pytest.mark.parametrize(
    "name", ["CocoDataModule", "Coco2017DataModule", "SyntheticDataModule", "ViaDataModule"]
)
def test_legacy_data_modules_move_to_datamodules(name):
    old = {"_target_": f"msr.data.{name}", "batch_size": 2}
    assert legacy_data_config(old) == {"_target_": f"msr.data.datamodules.{name}", "batch_size": 2}
    assert old == {"_target_": f"msr.data.{name}", "batch_size": 2}  # a copy is changed


@pytest.mark.parametrize(
    "config",
    [
        {"_target_": "msr.data.datamodules.CocoDataModule"},
        {"_target_": "my_project.CocoDataModule"},
        {"_target_": "msr.data.OtherDataModule"},
        {"batch_size": 2},
        {},
    ],
    ids=["already_moved", "other_package", "other_module", "no_target", "empty"],
)
def test_other_data_configs_are_copied_unchanged(config):
    converted = legacy_data_config(config)
    assert converted == config and converted is not config


def test_no_legacy_data_config_stays_none():
    assert legacy_data_config(None) is None


# --- AtomicCheckpointIO and stale_temporaries ----------------------------------------------------------


def test_stale_temporaries_are_the_interrupted_writes_of_that_checkpoint_only(tmp_path):
    names = [
        ".last.ckpt.b1.tmp",
        ".last.ckpt.a2.tmp",
        "last.ckpt",
        ".last.ckpt.tmp",
        ".best.ckpt.c3.tmp",
        ".last.ckpt.d4.tmp.x",
        "last.ckpt.e5.tmp",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    expected = [tmp_path / ".last.ckpt.a2.tmp", tmp_path / ".last.ckpt.b1.tmp"]
    assert stale_temporaries(tmp_path / "last.ckpt") == expected
    assert stale_temporaries(str(tmp_path / "last.ckpt")) == expected


def test_stale_temporaries_of_a_name_with_glob_characters_are_its_own(tmp_path):
    """`epoch[1].ckpt`: its own leftovers, not those of `epoch1.ckpt` that `[1]` would match as a pattern."""
    own, other = tmp_path / ".epoch[1].ckpt.abc.tmp", tmp_path / ".epoch1.ckpt.abc.tmp"
    for file in (own, other):
        file.write_bytes(b"half a checkpoint")
    assert stale_temporaries(tmp_path / "epoch[1].ckpt") == [own]
    AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "epoch[1].ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "epoch[1].ckpt"]


def test_no_stale_temporaries_without_the_folder(tmp_path):
    assert stale_temporaries(tmp_path / "missing" / "last.ckpt") == []
    assert stale_temporaries(tmp_path / "last.ckpt") == []


class Observed(AtomicCheckpointIO):
    """Records the temporary file given to `written`, its content and the checkpoint's, at that time."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.seen: list[tuple] = []

    def written(self, temporary: Path) -> None:
        self.seen.append(
            (
                temporary,
                torch.load(temporary, weights_only=True),
                self.final.read_bytes() if self.final.exists() else None,
            )
        )


def test_save_checkpoint_writes_a_temporary_beside_it_then_renames_it(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = Observed(path)
    first = {"state_dict": linear_state(), "global_step": 1}
    assert io.save_checkpoint(first, path) is None
    second = {"state_dict": linear_state(seed=1), "global_step": 2}
    old_bytes = path.read_bytes()
    io.save_checkpoint(second, str(path))
    assert len(io.seen) == 2
    for (temporary, content, before), expected, earlier in zip(io.seen, [first, second], [None, old_bytes]):
        assert type(temporary) is type(path) and temporary.parent == path.parent
        assert re.fullmatch(r"\.last\.ckpt\..+\.tmp", temporary.name) and not temporary.exists()
        assert content["global_step"] == expected["global_step"]
        assert before == earlier  # the checkpoint was still the earlier one while the temporary was written
    saved = torch.load(path, weights_only=True)
    assert saved["global_step"] == 2
    assert torch.equal(saved["state_dict"]["net.bias"], second["state_dict"]["net.bias"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_save_checkpoint_removes_the_stale_temporaries_of_that_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    stale = [tmp_path / ".last.ckpt.killed1.tmp", tmp_path / ".last.ckpt.killed2.tmp"]
    other = tmp_path / ".best.ckpt.killed3.tmp"
    for file in [*stale, other]:
        file.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.ckpt.killed3.tmp", "last.ckpt"]


def test_stale_temporary_removed_by_another_writer_meanwhile_is_no_error(tmp_path):
    path = tmp_path / "last.ckpt"
    stale = tmp_path / ".last.ckpt.killed.tmp"
    stale.write_bytes(b"half a checkpoint")

    class OtherWriterCleans(AtomicCheckpointIO):
        def written(self, temporary: Path) -> None:
            stale.unlink()

    OtherWriterCleans().save_checkpoint({"global_step": 3}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_failed_write_leaves_the_earlier_checkpoint_whole_and_no_new_temporary(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)
    earlier = path.read_bytes()
    stale = tmp_path / ".last.ckpt.killed.tmp"
    stale.write_bytes(b"half a checkpoint")
    with pytest.raises(Exception, match="pickle"):
        io.save_checkpoint({"global_step": 2, "callback": lambda: None}, path)  # torch.save cannot write it
    assert path.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == [stale.name, "last.ckpt"]  # kept for the next write


def test_save_checkpoint_takes_no_storage_options(tmp_path):
    path = tmp_path / "last.ckpt"
    with pytest.raises(TypeError) as info:
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, path, storage_options={"a": 1})
    assert str(info.value) == "AtomicCheckpointIO does not take storage_options"
    with pytest.raises(TypeError) as info:
        Observed(path).save_checkpoint({"global_step": 1}, path, storage_options={})
    assert str(info.value) == "Observed does not take storage_options"
    assert list(tmp_path.iterdir()) == []
