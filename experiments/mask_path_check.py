"""Does the lean mask path change a trained model's evaluation? A check on a real checkpoint.

Evaluates one msr-train checkpoint on its validation data twice in one process, with the same weights
and the same pictures:

- lean: msr's path (masks thresholded as crops of their boxes, COCO RLE written from the crops);
- full image: torchvision's post-processing (every mask pasted into a full-image float tensor), then
  thresholded at the same probability and encoded from the full-image array.

Prints whether every segm result's RLE is the same byte for byte, the largest difference of the
segm/bbox metrics, and writes them to `--json`.

    python experiments/mask_path_check.py outputs/quickstart/<run>/checkpoints/last.ckpt \\
        --json experiments/benchmarks/results/mask_path_check.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from msr.evaluation.evaluator import COCOEvaluator
from msr.files import write_json_atomic
from msr.training.checkpoints import load_module


def full_image_transform(transform: GeneralizedRCNNTransform) -> GeneralizedRCNNTransform:
    """Return torchvision's own transform with the settings of `transform` (masks pasted full-image)."""
    return GeneralizedRCNNTransform(
        transform.min_size,
        transform.max_size,
        transform.image_mean,
        transform.image_std,
        size_divisible=transform.size_divisible,
        fixed_size=transform.fixed_size,
    )


def evaluate(module: Any, datamodule: Any) -> tuple[dict[str, float], list[dict[str, Any]], float, str]:
    """Return (metrics, segm results in the detections' order, seconds, the form of the masks the
    evaluator was given: 'BoxMasks' or 'Tensor') of one validation of `module`."""
    forms: set[str] = set()
    update = module.evaluator.update

    def recording_update(outputs: Any, image_ids: Any) -> None:
        forms.update(type(o["masks"]).__name__ for o in outputs if "masks" in o)
        update(outputs, image_ids)

    module.evaluator.update = recording_update
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    started = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    seconds = time.perf_counter() - started
    segm = module.evaluator.local_results("segm")  # the detections' own order, picture by picture
    module.evaluator.update = update
    return dict(module.last_evaluation.result.metrics), segm, seconds, "/".join(sorted(forms))


def git_commit() -> str | None:
    """Return the checkout's commit, or None outside git."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    """Run the check; return 0 when the RLEs are identical and the metrics equal to 1e-12, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    evaluator = COCOEvaluator(upper_bound=False, bootstrap=0, calibration=True)
    module = load_module(args.checkpoint, evaluator=evaluator)
    datamodule = instantiate(OmegaConf.create(module.hparams["data_config"]), _convert_="all")
    pl.seed_everything(0, verbose=False)
    lean_metrics, lean, lean_s, lean_form = evaluate(module, datamodule)
    module.net.transform = full_image_transform(module.net.transform)
    full_metrics, full, full_s, full_form = evaluate(module, datamodule)
    if (lean_form, full_form) != ("BoxMasks", "Tensor"):
        raise SystemExit(
            f"the two evaluations got masks as {lean_form} and {full_form}, not as crops and full images"
        )

    same_rles = len(lean) == len(full) and all(
        a["segmentation"] == b["segmentation"] and a["image_id"] == b["image_id"] for a, b in zip(lean, full)
    )
    keys = sorted(k for k in lean_metrics if k.startswith(("segm/", "bbox/", "calib/")))
    differences = {
        k: abs(lean_metrics[k] - full_metrics[k])
        for k in keys
        if math.isfinite(lean_metrics[k]) and math.isfinite(full_metrics.get(k, math.nan))
    }
    largest = max(differences.values(), default=0.0)
    record = {
        "checkpoint": str(args.checkpoint),
        "global_step": module.checkpoint_step,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {platform.python_version()}",
        "pictures": int(module.evaluator.num_images),
        "segm_results": len(lean),
        "mask_forms": {"lean": lean_form, "full_image": full_form},
        "same_rles": same_rles,
        "largest_metric_difference": largest,
        "segm/AP": {"lean": lean_metrics.get("segm/AP"), "full_image": full_metrics.get("segm/AP")},
        "bbox/AP": {"lean": lean_metrics.get("bbox/AP"), "full_image": full_metrics.get("bbox/AP")},
        "validation_seconds": {"lean": lean_s, "full_image": full_s},
    }
    print(json.dumps(record, indent=2))
    if args.json:
        write_json_atomic(record, args.json, indent=2)
    return 0 if same_rles and largest <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
