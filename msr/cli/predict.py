"""msr-predict: run a trained checkpoint on a folder of pictures.

    msr-predict ckpt_path=outputs/quickstart/<run>/checkpoints/best.ckpt images=/path/to/pictures

Writes, in the run folder: `bbox_results.json` (COCO results, `bbox` xywh, `score` = box score) and
`segm_results.json` (`segmentation` RLE, `score` = mask score, `class_score`, `mask_iou`); `images.json`
(the COCO `images` list: ids map back to file names, and with categories it scores with msr-eval); and
`overlays/<picture>.png` (masks, boxes, class, box score and mask score of the detections whose box score
is at least `score_thresh`). See msr.training.callbacks.predictions.PredictionWriter. The run holds its
folder while it runs (msr.run_lock): a second run in the same folder stops with one line.

A picture that cannot be read stops the run (exit status 2) after the results of the pictures done so far
are written; with `data.skip_unreadable=true` it is skipped, and named in `skipped_images.json`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from msr.cli.common import CONFIG_DIR, output_line, run_dir, say
from msr.cli.entry import run_entry, user_errors
from msr.cli.typos import check_job_overrides
from msr.errors import ConfigError
from msr.layout import existing_checkpoint
from msr.run_lock import hold_folder

#: What msr-predict needs from the command line, and how to give it.
REQUIRED = {
    "ckpt_path": "ckpt_path=<checkpoint written by msr-train, e.g. checkpoints/best.ckpt>",
    "images": "images=<folder of pictures>",
}


def predict(cfg: DictConfig) -> Path:
    """Run msr-predict for `cfg`; return the run folder holding the JSON files and overlays."""
    check_job_overrides(cfg, "msr-predict")
    missing = [key for key in REQUIRED if OmegaConf.is_missing(cfg, key) or not cfg[key]]
    if missing:
        raise ConfigError(f"give {' and '.join(REQUIRED[k] for k in missing)} on the command line")
    folder = run_dir()
    say(f"msr-predict: run folder {folder}")
    with hold_folder(folder, "msr-predict"):  # one run per folder: a second one stops with one line
        existing_checkpoint(cfg.ckpt_path)  # a missing file is named before Lightning and torch load
        import lightning.pytorch as pl  # here: the folder is named before Lightning and torch load
        from hydra.utils import instantiate

        from msr.training.assembly import build_callbacks
        from msr.training.checkpoints import load_module

        pl.seed_everything(cfg.seed, verbose=False)
        module = load_module(cfg.ckpt_path, trust_pickle=cfg.trust_pickle)
        datamodule = instantiate(cfg.data, _convert_="all")
        trainer: pl.Trainer = instantiate(
            cfg.trainer, callbacks=build_callbacks(cfg.callbacks, cfg.trainer), default_root_dir=str(folder)
        )
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    return folder


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point of msr-predict."""
    with user_errors("msr-predict"):
        folder = predict(cfg)
    say(output_line("msr-predict", folder))


def main() -> None:
    """Console entry point of msr-predict (errors before the job starts are one line too)."""
    run_entry("msr-predict", hydra_main)


if __name__ == "__main__":
    main()
