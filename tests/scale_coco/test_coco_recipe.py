"""The COCO recipe (`experiment=coco_r50_1x`) end to end at miniature scale on CPU, on the COCO 2017
directory layout: train a few steps from an ImageNet-format ResNet-50 file, evaluate the checkpoint
with msr-eval, run msr-predict on the val pictures, so the first real COCO run does not fail on a path
or a key."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from support.cli import run_cli
from support.env import subprocess_env

#: The recipe made tiny: CPU, 2 steps, 64 px, few RoIs; everything else is coco_r50_1x's own.
TINY = [
    "trainer=cpu",
    "schedule=cpu_tiny",
    "schedule.max_steps=2",
    "data.num_workers=0",
    "data.pin_memory=false",
    "data.persistent_workers=false",
    "model.min_size=64",
    "model.max_size=96",
    "model.rpn_pre_nms_top_n_train=200",
    "model.rpn_post_nms_top_n_train=100",
    "model.rpn_pre_nms_top_n_test=100",
    "model.rpn_post_nms_top_n_test=50",
    "model.box_batch_size_per_image=32",
    "model.box_detections_per_img=10",
    "logger=csv",
]


@pytest.mark.slow
def test_coco_r50_1x_trains_evaluates_and_predicts_on_the_coco_layout(coco_like_root, tmp_path) -> None:
    env = subprocess_env(tmp_path)
    weights = tmp_path / "resnet50_imagenet.pth"  # an ImageNet-format state_dict, as a user would pass
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    run_dir = tmp_path / "train"
    run_cli(
        "train",
        "experiment=coco_r50_1x",
        f"data.root={coco_like_root}",
        f"init.backbone_weights={weights}",
        *TINY,
        f"hydra.run.dir={run_dir}",
        env=env,
        cwd=tmp_path,
    )
    trained = json.loads((run_dir / "eval" / "val_metrics.json").read_text())
    assert trained["global_step"] == 2 and "segm_upper_bound/AP" in trained  # the recipe's upper bound
    ckpt = run_dir / "checkpoints" / "last.ckpt"

    eval_dir = tmp_path / "eval"
    # on the data config stored in the checkpoint
    run_cli("evaluate", f"ckpt_path={ckpt}", f"hydra.run.dir={eval_dir}", env=env, cwd=tmp_path)
    evaluated = json.loads((eval_dir / "eval" / "val_metrics.json").read_text())
    assert evaluated["segm/AP"] == trained["segm/AP"] and evaluated["bbox/AP"] == trained["bbox/AP"]

    predict_dir = tmp_path / "predict"
    pictures = coco_like_root / "val2017"
    overrides = [
        f"ckpt_path={ckpt}",
        f"images={pictures}",
        "score_thresh=0.0",
        f"hydra.run.dir={predict_dir}",
    ]
    run_cli("predict", *overrides, env=env, cwd=tmp_path)
    names = {i["file_name"] for i in json.loads((predict_dir / "images.json").read_text())}
    assert names == {p.name for p in pictures.iterdir()}
    assert len(list((predict_dir / "overlays").glob("*.png"))) == len(names)
