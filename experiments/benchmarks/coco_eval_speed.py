"""Benchmark: COCO evaluation time of faster-coco-eval vs pycocotools on the same results.

Cases:
- `fixture`: the COCO API's fake results on 100 val2014 images (../shared/data/coco_eval_fixture);
- `fixture_xN`: the fixture replicated N times under new image ids, detection scores jittered (real masks);
- `random`: random polygon ground truth and many jittered detections per image (a model-like load).

Each timing covers msr.evaluation.coco_eval.evaluate_coco (loadRes + evaluate + accumulate + summarize +
per-class AP) on a fresh ground-truth object; the best of `--repeats` runs is kept. The script also checks
that both backends give the same AP (bit for bit) and reports the largest difference over all 12 stats.

    python experiments/benchmarks/coco_eval_speed.py [--replicate 5] [--images 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from msr.evaluation.coco_eval import evaluate_coco
from msr.evaluation.ground_truth import make_coco
from msr.evaluation.metrics import COCO_STATS

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_eval_fixture"
BACKENDS = ("pycocotools", "faster_coco_eval")


def replicate(gt: dict, results: list[dict], times: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Return the dataset and results copied `times` times under new image/annotation ids, scores jittered."""
    rng = np.random.default_rng(seed)
    step = max(img["id"] for img in gt["images"]) + 1
    ann_step = max(a["id"] for a in gt["annotations"]) + 1
    images, anns, dets = [], [], []
    for k in range(times):
        images += [{**img, "id": img["id"] + k * step} for img in gt["images"]]
        anns += [
            {**a, "id": a["id"] + k * ann_step, "image_id": a["image_id"] + k * step}
            for a in gt["annotations"]
        ]
        jitter = rng.uniform(0.9, 1.1, size=len(results))
        dets += [
            {**r, "image_id": r["image_id"] + k * step, "score": float(r["score"] * j)}
            for r, j in zip(results, jitter)
        ]
    return {**gt, "images": images, "annotations": anns}, dets


def random_case(num_images: int, dets_per_image: int, seed: int = 0) -> tuple[dict, dict[str, list[dict]]]:
    """Return (dataset, {"bbox": results, "segm": results}) with random ellipse-like polygons as objects."""
    rng = np.random.default_rng(seed)
    h, w, num_cats = 480, 640, 20
    cats = [{"id": 2 * c + 1, "name": f"class{c}"} for c in range(num_cats)]
    images, anns, bbox_res, segm_res = [], [], [], []
    for i in range(num_images):
        images.append({"id": i + 1, "height": h, "width": w})
        objects = []
        for _ in range(int(rng.integers(3, 15))):
            cx, cy = rng.uniform(20, w - 20), rng.uniform(20, h - 20)
            rx, ry = rng.uniform(4, 120), rng.uniform(4, 120)
            cat = cats[int(rng.integers(num_cats))]["id"]
            objects.append((cx, cy, rx, ry, cat))
            poly = _ellipse(cx, cy, rx, ry, h, w)
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "segmentation": [poly],
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
        for d in range(dets_per_image):  # jittered copies of objects, the rest of them near-misses
            cx, cy, rx, ry, cat = objects[d % len(objects)]
            s = 0.05 + 0.3 * d / dets_per_image
            cx, cy = cx + rng.normal(0, s * rx), cy + rng.normal(0, s * ry)
            rx, ry = rx * rng.uniform(1 - s, 1 + s), ry * rng.uniform(1 - s, 1 + s)
            if rng.uniform() < 0.2:
                cat = cats[int(rng.integers(num_cats))]["id"]
            rle = mask_utils.merge(mask_utils.frPyObjects([_ellipse(cx, cy, rx, ry, h, w)], h, w))
            rle["counts"] = rle["counts"].decode("ascii")
            score = float(rng.uniform(0.05, 1.0))
            common = {"image_id": i + 1, "category_id": cat, "score": score}
            bbox_res.append({**common, "bbox": mask_utils.toBbox(rle).tolist()})
            segm_res.append({**common, "segmentation": rle})
    dataset = {"images": images, "annotations": anns, "categories": cats}
    return dataset, {"bbox": bbox_res, "segm": segm_res}


def _ellipse(cx: float, cy: float, rx: float, ry: float, h: int, w: int, n: int = 24) -> list[float]:
    """Return a polygon [x0, y0, x1, y1, ...] approximating an ellipse, clipped to the image."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    xs = np.clip(cx + rx * np.cos(t), 0, w - 1)
    ys = np.clip(cy + ry * np.sin(t), 0, h - 1)
    return np.stack([xs, ys], axis=1).ravel().tolist()


def time_case(dataset: dict, results: list[dict], iou_type: str, repeats: int) -> dict[str, Any]:
    """Return timings per backend, the speed-up, and the agreement of the two backends' metrics."""
    out: dict[str, Any] = {"num_images": len(dataset["images"]), "num_detections": len(results)}
    metrics = {}
    for backend in BACKENDS:
        best = float("inf")
        for _ in range(repeats):
            gt = make_coco(copy.deepcopy(dataset), backend)  # fresh: COCOeval caches RLEs in the GT dicts
            start = time.perf_counter()
            metrics[backend] = evaluate_coco(results, gt, iou_type, backend)
            best = min(best, time.perf_counter() - start)
        out[f"{backend}_s"] = round(best, 4)
    a, b = metrics["pycocotools"], metrics["faster_coco_eval"]
    out["speedup"] = round(out["pycocotools_s"] / out["faster_coco_eval_s"], 2)
    out["AP"] = a[f"{iou_type}/AP"]
    out["AP_identical"] = a[f"{iou_type}/AP"] == b[f"{iou_type}/AP"]
    out["max_abs_diff_12_stats"] = max(abs(a[f"{iou_type}/{n}"] - b[f"{iou_type}/{n}"]) for n in COCO_STATS)
    out["max_abs_diff_all_metrics"] = max(abs(a[k] - b[k]) for k in a)
    return out


def main() -> None:
    """Run the cases, print a table, and write the figures to --json if asked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicate", type=int, default=5, help="fixture copies for the fixture_xN case")
    parser.add_argument("--images", type=int, default=500, help="images of the random case (0: skip)")
    parser.add_argument("--dets-per-image", type=int, default=50)
    parser.add_argument(
        "--repeats", type=int, default=3, help="best of this many runs (1 for the random case)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    cases: list[tuple[str, dict, dict[str, list[dict]]]] = []
    if FIXTURE.is_dir():
        gt = json.loads((FIXTURE / "instances_val2014_100.json").read_text())
        res = {
            t: json.loads((FIXTURE / f"instances_val2014_fake{t}100_results.json").read_text())
            for t in ("bbox", "segm")
        }
        cases.append(("fixture", gt, res))
        if args.replicate > 1:
            rep = {t: replicate(gt, r, args.replicate) for t, r in res.items()}
            cases.append((f"fixture_x{args.replicate}", rep["segm"][0], {t: r for t, (_, r) in rep.items()}))
    else:
        print(f"(fixture not found at {FIXTURE}: fixture cases skipped)")
    if args.images > 0:
        start = time.perf_counter()
        dataset, res = random_case(args.images, args.dets_per_image)
        print(f"random case built in {time.perf_counter() - start:.1f}s")
        cases.append((f"random_{args.images}img_{args.dets_per_image}det", dataset, res))

    figures: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "cases": {}}
    header = (
        f"{'case':<28}{'type':<6}{'images':>7}{'dets':>8}{'pycocotools s':>15}{'faster s':>10}{'speedup':>9}"
    )
    print(header + f"{'AP':>10}  AP identical  max|Δ| 12 stats")
    for name, dataset, res in cases:
        for iou_type in ("bbox", "segm"):
            repeats = 1 if name.startswith("random") else args.repeats
            r = time_case(dataset, res[iou_type], iou_type, repeats)
            figures["cases"][f"{name}/{iou_type}"] = r
            print(
                f"{name:<28}{iou_type:<6}{r['num_images']:>7}{r['num_detections']:>8}"
                f"{r['pycocotools_s']:>15.3f}{r['faster_coco_eval_s']:>10.3f}{r['speedup']:>8.2f}x"
                f"{r['AP']:>10.4f}  {r['AP_identical']!s:<12}  {r['max_abs_diff_12_stats']:.1e}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
