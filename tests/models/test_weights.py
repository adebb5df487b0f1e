"""Weights come from local files only; every bad file gives one clear error naming it."""

import pytest
import torch
import torchvision
from support.tiny_nets import tiny_model
from torchvision.models.detection import maskrcnn_resnet50_fpn

from msr.models import (
    ConcatMaskIoUHead,
    WeightsError,
    build_detector,
    build_resnet_fpn_backbone,
    freeze_all_but_maskiou,
    load_weights,
)
from msr.models.weights import CLASS_ROW_KEYS, select_class_rows


def full_size_model(num_classes: int, **kwargs):
    """Return an MS R-CNN with the default R-50 FPN and the paper's head (as a torchvision model)."""
    return build_detector(num_classes, build_resnet_fpn_backbone(), maskiou_head=ConcatMaskIoUHead, **kwargs)


@pytest.fixture(scope="module")
def torchvision_checkpoint(tmp_path_factory):
    """A torchvision maskrcnn_resnet50_fpn state_dict (COCO layout: 91 classes), written by the test."""
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path_factory.mktemp("ckpt") / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_torchvision_mask_rcnn_checkpoint_loads_and_only_maskiou_head_is_new(torchvision_checkpoint):
    path, reference = torchvision_checkpoint
    model = full_size_model(91, min_size=64, max_size=64)
    load_weights(model, str(path), kind="maskrcnn")
    left = load_weights(model, path, kind="maskrcnn")
    assert left and all(k.startswith("roi_heads.maskiou_head.") for k in left)
    state = model.state_dict()
    # torchvision builds an untrained model with BatchNorm2d, whose num_batches_tracked counters have no
    # counterpart in FrozenBatchNorm2d (and no effect); every other tensor must have loaded.
    compared = [k for k in reference if not k.endswith("num_batches_tracked")]
    assert len(compared) > 300
    for key in compared:
        assert torch.equal(state[key], reference[key]), key
    # The loaded model runs and scores masks.
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert "mask_scores" in out[0]


def test_class_mismatch_names_the_keys_and_can_be_allowed(torchvision_checkpoint):
    path, reference = torchvision_checkpoint
    with pytest.raises(
        WeightsError, match=r"maskrcnn_resnet50_fpn_coco\.pth: shape mismatch: roi_heads\.box_predictor"
    ):
        load_weights(full_size_model(5), str(path), kind="maskrcnn")
    model = full_size_model(5)
    load_weights(model, str(path), kind="maskrcnn", allow_class_mismatch=True)
    assert torch.equal(
        model.state_dict()["backbone.fpn.layer_blocks.0.0.weight"],
        reference["backbone.fpn.layer_blocks.0.0.weight"],
    )


def test_corrupted_missing_and_foreign_files_give_clear_errors(tmp_path):
    model = tiny_model()
    corrupted = tmp_path / "corrupted.pth"
    corrupted.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(WeightsError, match="corrupted.pth"):
        load_weights(model, corrupted)
    truncated = tmp_path / "truncated.pth"
    torch.save(model.state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated.pth"):
        load_weights(model, truncated)
    with pytest.raises(WeightsError, match="weights file not found: .*nowhere.pth"):
        load_weights(model, tmp_path / "nowhere.pth")
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_a_state_dict)
    with pytest.raises(WeightsError, match="list.pth does not hold a state_dict"):
        load_weights(model, not_a_state_dict)
    other = tmp_path / "resnet34_as_resnet18.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), other)
    with pytest.raises(WeightsError, match="resnet34_as_resnet18.pth: keys not in the model: layer1.2"):
        load_weights(model, other, kind="backbone")


def test_imagenet_backbone_state_dict_loads_into_the_body(tmp_path):
    torch.manual_seed(1)
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(resnet.state_dict(), path)
    model = tiny_model()
    load_weights(model, str(path), kind="backbone")
    body = model.backbone.body.state_dict()
    assert torch.equal(body["layer3.1.conv2.weight"], resnet.state_dict()["layer3.1.conv2.weight"])
    assert torch.equal(body["bn1.running_var"], resnet.state_dict()["bn1.running_var"])


@pytest.mark.parametrize("prefix", ["net.", "model."])  # today's LightningModule attribute, then the old one
def test_own_lightning_style_checkpoint_round_trip_and_freezing(tmp_path, prefix):
    torch.manual_seed(2)
    trained = tiny_model()
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"{prefix}{k}": v for k, v in trained.state_dict().items()}, "epoch": 3}, path)
    fresh = tiny_model()
    load_weights(fresh, str(path))  # kind "auto" recognises the prefix
    freeze_all_but_maskiou(fresh)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    trainable = {n for n, p in fresh.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("roi_heads.maskiou_head.") for n in trainable)
    with pytest.raises(ValueError, match="no MaskIoU head"):
        freeze_all_but_maskiou(tiny_model(design=None))


def test_classes_numbered_by_category_id_are_picked_for_the_datas_labels(tmp_path):
    """torchvision's COCO weights number 91 classes by category id; the model has contiguous labels."""
    state = {
        key: torch.arange(8 * (4 if "bbox_pred" in key else 1), dtype=torch.float32) for key in CLASS_ROW_KEYS
    }
    picked = select_class_rows(state, [0, 3, 7], "coco.pth")
    assert picked["roi_heads.box_predictor.cls_score.weight"].tolist() == [0, 3, 7]
    assert picked["roi_heads.box_predictor.bbox_pred.bias"].tolist() == [
        0,
        1,
        2,
        3,
        12,
        13,
        14,
        15,
        28,
        29,
        30,
        31,
    ]
    with pytest.raises(WeightsError, match="coco.pth: .* holds 8 classes; class 9 asked for"):
        select_class_rows(state, [0, 9], "coco.pth")
    del state["roi_heads.mask_predictor.mask_fcn_logits.bias"]
    with pytest.raises(WeightsError, match="no roi_heads.mask_predictor.mask_fcn_logits.bias"):
        select_class_rows(state, [0, 1], "coco.pth")
