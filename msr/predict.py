"""msr-predict: run a trained checkpoint on a folder of pictures.

    msr-predict ckpt_path=outputs/quickstart/<run>/checkpoints/best.ckpt images=/path/to/pictures

Writes, in the run folder, as msr-eval does: `bbox_results.json` (COCO results, `bbox` xywh, `score` =
box score) and `segm_results.json` (`segmentation` RLE, `score` = mask score, `class_score`, `mask_iou`);
`images.json` (the COCO `images` list: ids map back to file names, and with categories it scores with
msr-eval); and `overlays/<picture>.png` (masks, boxes, class, box score and mask score of the
detections whose box score is at least `score_thresh`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from msr.data import load_rgb_image
from msr.evaluation import gather_results, predictions_to_coco, save_json_atomic
from msr.module import MSRModule
from msr.runtime import CONFIG_DIR, load_checkpoint, run_dir, user_errors
from msr.visualize import draw_prediction


class PredictionWriter(pl.Callback):
    """Turns each predict batch into COCO results and overlay PNGs as it comes; writes the JSON at the end."""

    def __init__(self, folder: Path, images_root: Path, score_thresh: float, overlays: bool) -> None:
        self.folder = folder
        self.images_root = images_root
        self.score_thresh = score_thresh
        self.overlays = overlays
        self.results: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
        self.images: list[dict[str, Any]] = []

    def on_predict_batch_end(
        self, trainer, pl_module: MSRModule, outputs, batch, batch_idx, dataloader_idx=0
    ):
        metas, detections = outputs
        for meta, det in zip(metas, detections):
            image_id, file_name = int(meta["image_id"]), str(meta["file_name"])
            height, width = (int(s) for s in meta["orig_size"])
            self.images.append(
                {"image_id": image_id, "file_name": file_name, "height": height, "width": width}
            )
            boxes, segms = predictions_to_coco(det, image_id, pl_module.label_to_cat_id)
            self.results["bbox"] += boxes
            self.results["segm"] += segms
            if self.overlays:
                picture = draw_prediction(
                    load_rgb_image(self.images_root / file_name),
                    det,
                    pl_module.class_names,
                    self.score_thresh,
                )
                out = self.folder / "overlays" / Path(file_name).with_suffix(".png")
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(picture).save(out)

    def on_predict_end(self, trainer, pl_module) -> None:
        gathered = {kind: gather_results(results, [])[0] for kind, results in self.results.items()}
        images, _ = gather_results(self.images, [])
        if trainer.is_global_zero:
            for kind, results in gathered.items():
                save_json_atomic(results, self.folder / f"{kind}_results.json")
            images = [{"id": i.pop("image_id"), **i} for i in images]
            save_json_atomic(images, self.folder / "images.json")
            print(f"msr-predict: {len(images)} pictures, {len(gathered['segm'])} detections -> {self.folder}")


def predict(cfg: DictConfig) -> Path:
    """Run msr-predict for `cfg`; return the run folder holding the JSON files and overlays."""
    pl.seed_everything(cfg.seed, verbose=False)
    folder = run_dir()
    module = load_checkpoint(cfg.ckpt_path)
    datamodule = instantiate(cfg.data, _convert_="all")
    writer = PredictionWriter(folder, Path(cfg.images), float(cfg.score_thresh), bool(cfg.overlays))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=[writer], default_root_dir=str(folder))
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    return folder


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of msr-predict."""
    with user_errors("msr-predict"):
        predict(cfg)


if __name__ == "__main__":
    main()
