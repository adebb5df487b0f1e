"""Draw the example of msr-aggregate's study figure shown in the README, from runs this script makes up.

    python experiments/study_figure_example.py docs/images/study_figure_example.png

No model is trained: the script writes job folders by hand (40 generated pictures of 1-3 rectangles in
two categories; detections are the rectangles shifted by a few pixels, some missed, some false
positives) for three made-up variants with 4 seeds each, and runs `msr.studies.aggregate` on them. The
figure shows what msr-aggregate draws; its numbers describe nothing but these made-up runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml
from pycocotools import mask as mask_utils

from msr.evaluation.coco_eval import evaluate_coco
from msr.studies.aggregate import aggregate

H, W = 40, 48
PICTURES = 40
SEEDS = (0, 1, 2, 3)
CATEGORIES = [{"id": 1, "name": "square"}, {"id": 2, "name": "bar"}]


def rle(box: tuple[int, int, int, int]) -> dict:
    """Return the COCO RLE of the rectangle `box` = (x0, y0, x1, y1)."""
    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    mask[box[1] : box[3], box[0] : box[2]] = 1
    encoded = mask_utils.encode(mask)
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def make_set(rng: np.random.Generator) -> dict:
    """Return the COCO dict of the generated pictures."""
    images, anns = [], []
    for image_id in range(1, PICTURES + 1):
        images.append({"id": image_id, "height": H, "width": W, "file_name": f"{image_id}.png"})
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, W - 16)), int(rng.integers(0, H - 16))
            box = (x0, y0, x0 + int(rng.integers(6, 16)), y0 + int(rng.integers(6, 16)))
            anns.append({
                "id": len(anns) + 1, "image_id": image_id, "category_id": int(rng.integers(1, 3)),
                "segmentation": rle(box), "area": float((box[2] - box[0]) * (box[3] - box[1])),
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "iscrowd": 0,
            })
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def make_results(gt: dict, rng: np.random.Generator, shift: int, quality: float | None) -> list[dict]:
    """Return made-up segm results: each object found with probability 0.85, shifted by up to `shift`
    pixels, plus false positives; with `quality`, a predicted IoU that follows the shift with that weight
    (1: perfectly, 0: not at all) and the score class score × predicted IoU."""
    out = []
    for ann in gt["annotations"]:
        if rng.random() > 0.85:
            continue
        x, y, w, h = ann["bbox"]
        dx, dy = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
        box = (max(x + dx, 0), max(y + dy, 0), min(x + w + dx, W), min(y + h + dy, H))
        out.append((ann["image_id"], ann["category_id"], box, 1.0 - (abs(dx) + abs(dy)) / (2 * shift + 1)))
    for image in gt["images"]:
        if rng.random() < 0.5:
            x0, y0 = int(rng.integers(0, W - 8)), int(rng.integers(0, H - 8))
            out.append((image["id"], int(rng.integers(1, 3)), (x0, y0, x0 + 6, y0 + 6), 0.0))
    results = []
    for image_id, category, box, fit in out:
        score = float(rng.uniform(0.5, 1.0))
        record = {"image_id": image_id, "category_id": category, "segmentation": rle(box), "score": score}
        if quality is not None:
            iou = float(np.clip(quality * fit + (1 - quality) * rng.uniform(0, 1), 0.01, 1.0))
            record.update(class_score=score, mask_iou=iou, score=score * iou)
        results.append(record)
    return results


def write_runs(root: Path) -> Path:
    """Write the made-up job folders under `root`; return the folder holding them."""
    rng = np.random.default_rng(0)
    gt = make_set(rng)
    ann_file = root / "val.json"
    ann_file.write_text(json.dumps(gt))
    variants = {"none": None, "maskiou": 0.9, "maskiou_mask_only": 0.3}
    for head, quality in variants.items():
        for seed in SEEDS:
            job = root / "runs" / f"{head}_{seed}"
            (job / ".hydra").mkdir(parents=True)
            (job / "eval").mkdir()
            results = make_results(gt, np.random.default_rng(1000 * seed + len(head)), 3, quality)
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"head={head}", f"seed={seed}"]))
            (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "head": head}))
            (job / "eval" / "segm_results.json").write_text(json.dumps(results))
            ap = evaluate_coco(results, gt, "segm", backend="pycocotools", per_class=False)["segm/AP"]
            metrics = {"segm/AP": ap, "ann_file": str(ann_file)}
            (job / "eval" / "val_metrics.json").write_text(json.dumps(metrics))
    return root / "runs"


def main() -> None:
    """Write the example figure to the path given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = write_runs(Path(tmp))
        aggregate([runs], Path(tmp) / "study", reference="head=none", replicates=1000)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "study.png", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
