"""experiments/predicted_iou_bands.py on a hand-made run: the mean predicted IoU of each true-IoU band."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "predicted_iou_bands.py"


def test_detections_are_banded_by_their_true_iou(synth, tmp_path):
    h = w = 16
    images = [{"id": 1, "height": h, "width": w, "file_name": "1.png"}]
    gt = {
        "images": images,
        "annotations": [synth.annotation(1, 1, 3, h, w, (2, 2, 10, 10))],
        "categories": [{"id": 3, "name": "square"}, {"id": 4, "name": "other"}],
    }
    square = synth.rle_of(synth.rect_mask(h, w, 2, 2, 10, 10))
    results = [
        {"image_id": 1, "category_id": 3, "segmentation": square, "score": 0.9, "mask_iou": 0.9},  # IoU 1
        {"image_id": 1, "category_id": 4, "segmentation": square, "score": 0.2, "mask_iou": 0.2},  # class 4
        {"image_id": 1, "category_id": 4, "segmentation": square, "score": 0.4, "mask_iou": 0.4},  # class 4
    ]
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (tmp_path / "val.json").write_text(json.dumps(gt))
    (run / "eval" / "segm_results.json").write_text(json.dumps(results))
    (run / "eval" / "val_metrics.json").write_text(json.dumps({"ann_file": str(tmp_path / "val.json")}))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"| {run} | 2: 0.300 | 0: n/a | 1: 0.900 |" in proc.stdout
