"""One rank of the 2-process gloo test: evaluate its DistributedSampler share, write the result as JSON.

Usage: python ddp_worker.py RANK WORLD_SIZE PORT ANN_FILE OUT_JSON [EVAL_ANN_FILE]

EVAL_ANN_FILE, if given, is what the evaluator is told to read (e.g. a missing file, to test that an
error on rank 0 reaches every rank); the outputs are always built from ANN_FILE.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import synthetic_coco  # beside this script
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from msr.evaluation.evaluator import COCOEvaluator


def main() -> None:
    """Run one rank and write {"metrics", "images", "has_results"} (or {"error"}) to OUT_JSON."""
    rank, world, port = (int(a) for a in sys.argv[1:4])
    ann_file, out_json = sys.argv[4:6]
    eval_ann_file = sys.argv[6] if len(sys.argv) > 6 else ann_file
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        with open(ann_file) as f:
            dataset = json.load(f)
        image_ids = [img["id"] for img in dataset["images"]]
        outputs = synthetic_coco.noisy_outputs(dataset)
        sampler = DistributedSampler(range(len(image_ids)), num_replicas=world, rank=rank, shuffle=False)
        evaluator = COCOEvaluator(upper_bound=True).bind(eval_ann_file, synthetic_coco.CAT_IDS)
        seen = []
        for index in sampler:  # batches of one image, as a validation loop would
            image_id = image_ids[index]
            evaluator.update([outputs[image_id]], [image_id])
            seen.append(image_id)
        try:
            result = evaluator.compute()
            rank_zero_only = (result.results, result.image_ids, result.calibration)
            report = {
                "metrics": result.metrics,
                "images": seen,
                "has_results": [x is not None for x in rank_zero_only],
            }
        except Exception as e:
            report = {"error": f"{type(e).__name__}: {e}"}
        with open(out_json, "w") as f:
            json.dump(report, f)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
