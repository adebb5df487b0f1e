"""Draw msr-predict's overlay of the same made-up detections on pictures of 128, 800 and 2048 px, as
msr-predict draws them (small pictures enlarged, labels scaled to the picture), for a look by eye.

    python experiments/overlay_examples.py --out docs/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from msr.viz.labels import enlargement_for
from msr.viz.overlays import draw_prediction, enlarge_instances

CLASSES = ["__background__", "disc", "square", "triangle", "star", "ring", "cross"]
#: Boxes as fractions of the picture, two of them close together (their labels would overlap).
BOXES = [
    (0.08, 0.10, 0.40, 0.45),
    (0.12, 0.14, 0.45, 0.50),
    (0.55, 0.05, 0.95, 0.40),
    (0.30, 0.60, 0.70, 0.98),
]


def example(side: int) -> np.ndarray:
    """Return the overlay of a `side` x `side` picture with four detections, drawn as msr-predict does."""
    ramp = np.linspace(70, 150, side, dtype=np.float32)
    picture = np.stack(
        [ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1), np.full((side, side), 110)], -1
    )
    picture = picture.astype(np.uint8)
    boxes = torch.tensor([[x0 * side, y0 * side, x1 * side, y1 * side] for x0, y0, x1, y1 in BOXES])
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    masks = torch.stack(
        [
            ((xx + 0.5 - (b[0] + b[2]) / 2) / ((b[2] - b[0]) / 2)) ** 2
            + ((yy + 0.5 - (b[1] + b[3]) / 2) / ((b[3] - b[1]) / 2)) ** 2
            <= 1
            for b in boxes.tolist()
        ]
    )
    output = {
        "boxes": boxes,
        "masks": masks,
        "labels": torch.tensor([1, 2, 4, 5]),
        "scores": torch.tensor([0.97, 0.88, 0.76, 0.64]),
        "mask_scores": torch.tensor([0.91, 0.71, 0.58, 0.49]),
    }
    factor = enlargement_for(side, side)
    if factor > 1:
        picture = picture.repeat(factor, axis=0).repeat(factor, axis=1)
        output = enlarge_instances(output, factor)
    return draw_prediction(picture, output, CLASSES, score_thresh=0.5)


def main(argv: list[str] | None = None) -> None:
    """Write overlay_<side>.png (JPEG for the largest) into --out; print their paths."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for side in (128, 800, 2048):
        path = args.out / (f"overlay_{side}.jpg" if side > 1000 else f"overlay_{side}.png")
        Image.fromarray(example(side)).save(path, quality=85)
        print(path)


if __name__ == "__main__":
    main()
