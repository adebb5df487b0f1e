"""msr-predict: run a trained checkpoint on a folder of pictures.

    msr-predict ckpt_path=outputs/quickstart/<run>/checkpoints/best.ckpt images=/path/to/pictures

Writes, in the run folder: `bbox_results.json` (COCO results, `bbox` xywh, `score` = box score) and
`segm_results.json` (`segmentation` RLE, `score` = mask score, `class_score`, `mask_iou`); `images.json`
(the COCO `images` list: ids map back to file names, and with categories it scores with msr-eval); and
`overlays/<picture>.png` (masks, boxes, class, box score and mask score of the detections whose box score
is at least `score_thresh`). See msr.training.callbacks.predictions.PredictionWriter.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from msr.cli.common import CONFIG_DIR, build_callbacks, run_dir, user_errors
from msr.training.checkpoints import load_module


def predict(cfg: DictConfig) -> Path:
    """Run msr-predict for `cfg`; return the run folder holding the JSON files and overlays."""
    pl.seed_everything(cfg.seed, verbose=False)
    folder = run_dir()
    module = load_module(cfg.ckpt_path)
    datamodule = instantiate(cfg.data, _convert_="all")
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg.callbacks, cfg.trainer), default_root_dir=str(folder)
    )
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    return folder


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of msr-predict."""
    with user_errors("msr-predict"):
        predict(cfg)


if __name__ == "__main__":
    main()
