"""Bring your own trunk: protocol=head_only takes a torchvision Mask R-CNN state_dict as its frozen trunk
and trains only MaskIoU heads on it (what experiment=coco_retrofit does with torchvision's COCO weights)."""

from __future__ import annotations

import json

import pytest
import torch
from support.cli import TINY, run_cli
from support.env import subprocess_env
from torchvision.models import resnet18
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from msr.data.synthetic_shapes import CATEGORY_NAMES
from msr.models.weights import CLASS_ROW_KEYS


def torchvision_mask_rcnn(num_classes: int) -> MaskRCNN:
    """Return torchvision's MaskRCNN at the quickstart's widths (ResNet-18, FPN 64, box head 256, two
    64-channel mask convs): its state_dict has the layout of torchvision's COCO checkpoints."""
    torch.manual_seed(3)
    body = resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = BackboneWithFPN(
        body,
        {f"layer{k}": str(k - 1) for k in range(1, 5)},
        [64, 128, 256, 512],
        64,
        extra_blocks=LastLevelMaxPool(),
    )
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
    return MaskRCNN(
        backbone,
        None,
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(64 * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        mask_head=MaskRCNNHeads(64, [64, 64], 1),
        mask_predictor=MaskRCNNPredictor(64, 64, num_classes),
    )


@pytest.fixture(scope="module")
def retrofit(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("retrofit")
    weights = root / "maskrcnn_tv.pth"
    # numbered by category id, as torchvision's COCO weights: 9 ids, of which the data has 1..6
    state = torchvision_mask_rcnn(10).state_dict()
    torch.save(state, weights)
    env = subprocess_env(root / "cache")
    run = root / "run"
    proc = run_cli(
        "train",
        *TINY,
        "schedule=cpu_tiny",
        "protocol=head_only",
        f"protocol.trunk_weights={weights}",
        "protocol.trunk_classes=category_ids",
        "logger=csv",
        f"hydra.run.dir={run}",
        env=env,
        cwd=root,
    )
    return {"root": root, "weights": weights, "state": state, "run": run, "stdout": proc.stdout}


def test_a_torchvision_mask_rcnn_is_the_frozen_trunk_of_the_heads(retrofit):
    run, state = retrofit["run"], retrofit["state"]
    record = json.loads((run / "run_config.json").read_text())["trunk"]
    assert record["source"] == "file" and record["key"].startswith("file-")
    assert record["checkpoint"] == str(retrofit["weights"]) and record["run"] is None
    assert not (retrofit["root"] / "cache" / "trunks").exists()  # nothing was trained or cached
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    weights = checkpoint["state_dict"]
    rows = list(range(len(CATEGORY_NAMES) + 1))  # background and the data's category ids 1..6
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key in CLASS_ROW_KEYS:  # the classes of the data, picked by category id
            per_class = 4 if "bbox_pred" in key else 1
            value = value[: len(rows) * per_class]
        assert torch.equal(weights[f"net.{key}"], value), key  # the trunk as given, untouched
    assert any(k.startswith("net.roi_heads.maskiou_head.") for k in weights)
    segm = json.loads((run / "eval" / "segm_results.json").read_text())
    assert all("mask_iou" in r for r in segm)
    assert "val metrics after 4 steps" in retrofit["stdout"]
