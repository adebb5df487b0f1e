"""msr-predict's writer: COCO results JSON, picture list and overlay PNGs, on Lightning's prediction loop."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from msr.data.image_io import load_rgb_image
from msr.distributed import gather_results
from msr.evaluation.results import predictions_to_coco
from msr.files import write_json_atomic
from msr.viz.labels import enlargement_for
from msr.viz.overlays import draw_prediction, enlarge_instances, save_png

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Turns each predict batch into COCO results and overlay PNGs as it comes; writes the JSON at the end.

    In `folder`: `bbox_results.json` (`bbox` xywh, `score` = box score), `segm_results.json`
    (`segmentation` RLE, `score` = mask score, `class_score`, `mask_iou`), `images.json` (the COCO
    `images` list: ids map back to file names) and `overlays/<picture>.png` (detections whose box score
    is at least `score_thresh`). Under DDP every rank converts its pictures and rank 0 writes the files.

    Pictures with an EXIF orientation are predicted as the data set read them (upright unless
    `data.exif_orientation=ignore`, see msr.data.orientation): their `images.json` entry gives that
    picture's size and adds `exif_orientation` (2-8) and `turned_upright`; results and overlays are in the
    same frame, and a line on stdout counts them.

    Pictures the data set could not read (samples marked `unreadable`, see `ImageFolderDataset`) get no
    results; they are listed in `skipped_images.json` and named on stdout. When prediction stops on an
    error, the results of the pictures done so far are written all the same (under DDP each rank writes
    its own, `<name>.rank<r>.json`), so no finished work is lost.
    """

    def __init__(
        self, folder: str | Path, images_root: str | Path, score_thresh: float = 0.5, overlays: bool = True
    ) -> None:
        super().__init__(write_interval="batch")
        self.folder = Path(folder)
        self.images_root = Path(images_root)
        self.score_thresh = float(score_thresh)
        self.overlays = bool(overlays)
        self.results: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
        self.images: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []  # image_id, file_name, reason

    def write_on_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, batch_indices: Any,
        batch: Any, batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        """Convert one batch's detections to COCO results and draw its overlays."""
        metas, detections = prediction
        for meta, det in zip(metas, detections):
            image_id, file_name = int(meta["image_id"]), str(meta["file_name"])
            if "unreadable" in meta:
                reason = str(meta["unreadable"])
                self.skipped.append({"image_id": image_id, "file_name": file_name, "reason": reason})
                continue
            height, width = (int(s) for s in meta["orig_size"])
            image = {"image_id": image_id, "file_name": file_name, "height": height, "width": width}
            if "exif_orientation" in meta:  # tagged: say how it was read
                image["exif_orientation"] = int(meta["exif_orientation"])
                image["turned_upright"] = bool(meta["turned_upright"])
            self.images.append(image)
            boxes, segms = predictions_to_coco(det, image_id, pl_module.label_to_cat_id)
            self.results["bbox"] += boxes
            self.results["segm"] += segms
            if self.overlays:
                upright = image.get("turned_upright", False)  # the frame the detections are in
                picture = load_rgb_image(self.images_root / file_name, upright=upright)
                factor = enlargement_for(*picture.shape[:2])  # small pictures drawn larger, to be read
                if factor > 1:
                    picture = picture.repeat(factor, axis=0).repeat(factor, axis=1)
                    det = enlarge_instances(dict(det), factor)
                overlay = draw_prediction(picture, det, pl_module.class_names, self.score_thresh)
                save_png(overlay, self.folder / "overlays" / Path(file_name).with_suffix(".png"))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather every rank's results and write the JSON files (rank 0)."""
        gathered = {kind: gather_results(results, [])[0] for kind, results in self.results.items()}
        images, _ = gather_results(self.images, [])
        skipped, _ = gather_results(self.skipped, [])
        if not trainer.is_global_zero:
            return
        self._write(gathered, images, skipped)
        print(f"msr-predict: {len(images)} pictures, {len(gathered['segm'])} detections -> {self.folder}")
        tagged = [i for i in images if "exif_orientation" in i]
        if tagged:
            upright = tagged[0]["turned_upright"]
            how = "turned upright before prediction" if upright else "read as stored, not turned"
            print(
                f"msr-predict: {len(tagged)} pictures carry an EXIF orientation (first: "
                f"{tagged[0]['file_name']}); they were {how} (images.json: exif_orientation, turned_upright)"
            )
        if skipped:
            names = ", ".join(s["file_name"] for s in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
            print(f"msr-predict: skipped {len(skipped)} unreadable pictures: {names} (skipped_images.json)")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Write the results of the pictures done so far (this rank's own under DDP); no gathering."""
        suffix = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        self._write(self.results, self.images, self.skipped, suffix)
        log.warning(
            "msr-predict stopped after %d pictures; their results are in %s", len(self.images), self.folder
        )

    def _write(
        self,
        results: dict[str, list[dict[str, Any]]],
        images: list[dict[str, Any]],
        skipped: list[dict[str, Any]],
        suffix: str = "",
    ) -> None:
        """Write `<kind>_results<suffix>.json`, `images<suffix>.json` and `skipped_images<suffix>.json`
        (when pictures were skipped); return None."""
        for kind, kind_results in results.items():
            write_json_atomic(kind_results, self.folder / f"{kind}_results{suffix}.json")
        listed = [{"id": i["image_id"], **{k: v for k, v in i.items() if k != "image_id"}} for i in images]
        write_json_atomic(listed, self.folder / f"images{suffix}.json")
        if skipped:
            listed = [{"file_name": s["file_name"], "reason": s["reason"]} for s in skipped]
            write_json_atomic(listed, self.folder / f"skipped_images{suffix}.json", indent=1)
