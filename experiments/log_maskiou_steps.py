"""Run msr-train and log, for every training step, what the MaskIoU loss saw: one line per step.

Each line: the step, the RoIs whose target IoU passed tau out of the positive RoIs, the mean and
largest |prediction| of the supervised entries, the mean prediction and target of the kept ones, the
largest target IoU, and the loss. This is how experiments/studies/threshold.md ("Why tau = 0.75 wrecked the
detector") found that the head's outputs drift to |22| on steps with nothing to train on.

    python experiments/log_maskiou_steps.py /tmp/tau75.txt experiment=synthetic_ablation \\
        model.maskiou_loss.threshold=0.75 seed=0 logger=csv
"""

from __future__ import annotations

import sys
from typing import TextIO

from msr.models.maskiou import loss as maskiou_loss

FORWARD = maskiou_loss.MaskIoULoss.forward


def _mean(values) -> float:
    return float(values.mean()) if len(values) else float("nan")


def logging_forward(record: TextIO):
    """Return a MaskIoULoss.forward that computes the loss as before and writes one line to `record`."""
    step = [0]

    def forward(self, pred_ious, supervision):
        loss = FORWARD(self, pred_ious, supervision)
        kept = supervision.roi_iou > self.threshold
        pred = pred_ious.detach().float()[supervision.rows, supervision.cols]
        kept_entries = kept[supervision.rows]
        largest_iou = float(supervision.roi_iou.max()) if len(supervision.roi_iou) else 0.0
        record.write(
            f"{step[0]} kept={int(kept.sum())}/{len(supervision.roi_iou)} pred_mean={_mean(pred):.3f} "
            f"pred_absmax={float(pred.abs().max()) if len(pred) else 0.0:.3f} "
            f"kept_pred={_mean(pred[kept_entries]):.3f} "
            f"kept_target={_mean(supervision.values[kept_entries]):.3f} "
            f"roi_iou_max={largest_iou:.3f} loss={float(loss):.4f}\n"
        )
        record.flush()
        step[0] += 1
        return loss

    return forward


def main() -> None:
    """Patch the loss to log into argv[1], then run msr-train with the remaining arguments."""
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    with open(sys.argv[1], "w") as record:
        maskiou_loss.MaskIoULoss.forward = logging_forward(record)
        sys.argv = ["msr-train", *sys.argv[2:]]
        from msr.cli.train import main as train

        train()


if __name__ == "__main__":
    main()
