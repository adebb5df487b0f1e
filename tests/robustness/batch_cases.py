"""The entry-point cases that run in one `cli_batch.py` process (see support.cli.run_batch), on real files:
the inputs that must stop a program before any work with one line (exit status 2), the conversions that
warn, and msr-predict on a folder with a corrupt picture (with and without `data.skip_unreadable`)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from robust_cli import MODEL, SIZE, custom_data, tiny_coco, unwritable_folder
from support.masks import rle_of

TRAIN = [*MODEL, "schedule=cpu_tiny"]


def _rle(height: int, width: int) -> dict:
    """Return the JSON-ready compressed RLE of a filled square in a height x width picture."""
    mask = np.zeros((height, width), dtype=bool)
    mask[8:40, 8:40] = True
    return rle_of(mask)


def _train(name: str, root: Path, data: list[str], *extra: str, env: dict | None = None) -> dict:
    """Return an msr-train case on `data` whose run folder is root/name."""
    argv = [*TRAIN, *data, *extra, f"hydra.run.dir={root / name / 'run'}"]
    return {"name": name, "program": "train", "argv": argv, "env": env or {}}


def _data(root: Path, name: str, edit=None) -> list[str]:
    """Return the custom-data overrides of a tiny COCO set under root/name, changed by `edit`."""
    return custom_data(tiny_coco(root / name / "data", edit))


def _edit_val_polygon(train: dict, val: dict) -> None:
    val["annotations"][0]["segmentation"] = [[10.0, 10.0]]  # one point


def _edit_nan_bbox(train: dict, val: dict) -> None:
    train["annotations"][1]["bbox"] = [math.nan, 8.0, 32.0, 32.0]


def _edit_crowd_rle_size(train: dict, val: dict) -> None:
    crowd = {"id": 900, "image_id": 5, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1}
    val["annotations"].append({**crowd, "segmentation": {"size": [10, 10], "counts": [0, 100]}})


def _edit_crowd_rle_counts(train: dict, val: dict) -> None:
    crowd = {"id": 901, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1}
    train["annotations"].append({**crowd, "segmentation": {"size": [SIZE, SIZE], "counts": [0, 100]}})


def _edit_no_annotations(train: dict, val: dict) -> None:
    train["annotations"] = []


def _edit_only_crowd(train: dict, val: dict) -> None:
    for ann in train["annotations"]:
        ann["iscrowd"] = 1


def _edit_no_images(train: dict, val: dict) -> None:
    train["images"], train["annotations"] = [], []


def _edit_no_categories(train: dict, val: dict) -> None:
    for split in (train, val):
        split["categories"], split["annotations"] = [], []


def build(root: Path, checkpoint: Path) -> list[dict]:
    """Write the files of every case under `root`; return the cases (`checkpoint`: an msr-train one)."""
    cases = [
        _train("val_polygon", root, _data(root, "val_polygon", _edit_val_polygon)),
        _train("nan_bbox", root, _data(root, "nan_bbox", _edit_nan_bbox)),
        _train("crowd_rle_size", root, _data(root, "crowd_rle_size", _edit_crowd_rle_size)),
        _train("crowd_rle_counts", root, _data(root, "crowd_rle_counts", _edit_crowd_rle_counts)),
        _train("no_annotations", root, _data(root, "no_annotations", _edit_no_annotations)),
        _train("only_crowd", root, _data(root, "only_crowd", _edit_only_crowd)),
        _train("no_images", root, _data(root, "no_images", _edit_no_images)),
        _train("no_categories", root, _data(root, "no_categories", _edit_no_categories)),
    ]
    resized = _data(root, "val_size", None)
    picture = root / "val_size" / "data" / "images" / "5.png"
    shutil.copy(picture, root / "val_size" / "original.png")
    Image.new("RGB", (SIZE, SIZE - 16)).save(picture)  # 64 wide, 48 high; the JSON says 64 x 64
    cases.append(_train("val_size", root, resized))
    cases.append(_train("exif_quarter_turn", root, _phone_photo(root)))

    good = _data(root, "good", None)
    cases += [
        _train("max_epochs_abc", root, good, "schedule.max_epochs=abc"),
        _train("custom_without_paths", root, ["data=custom"]),
        _train("unknown_optimizer", root, good, "optimizer._target_=torch.optim.Adamx"),
        _train("unknown_optimizer_choice", root, good, "optimizer=adamx"),
        _train("unknown_key", root, good, "optim.name=adamx"),
        _train("misspelt_key", root, good, "schedule.max_step=4"),
        _train("misspelt_added_key", root, good, "+schedule.max_step=4"),
        _train("added_existing_key", root, good, "+data.batch_size=3"),
        _train("bad_trainer_value", root, good, "+trainer.max_time=xyz"),
        _train("bad_override_grammar", root, good, "schedule.max_epochs=[1"),
        _train("misspelt_group", root, good, "haed=none"),
        _train("batch_size_0", root, good, "data.batch_size=0"),
        _train("full_error", root, good, "schedule.max_epochs=abc", env={"HYDRA_FULL_ERROR": "1"}),
        _train("unexpected_error", root, good, "model.box_head_dim=-1"),  # torch fails building the model
    ]
    truncated, text = root / "truncated.ckpt", root / "notes.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:100_000])
    text.write_text("a text file\nnot a checkpoint\n")
    cases += [
        _train("ckpt_truncated", root, good, f"ckpt_path={truncated}"),
        _train("ckpt_text", root, good, f"ckpt_path={text}"),
        _train("ckpt_other_classes", root, good, f"ckpt_path={checkpoint}"),
        {
            "name": "eval_ckpt_text",
            "program": "evaluate",
            "argv": [f"ckpt_path={text}", _run(root, "eval_text")],
        },
    ]
    readonly = unwritable_folder(root / "readonly_run")
    blocker = root / "a_file"
    blocker.write_text("a file where the run folder's parent should be")
    cases += [
        {
            "name": "readonly_run_folder",
            "program": "train",
            "argv": [*TRAIN, *good, f"hydra.run.dir={readonly}"],
        },
        {"name": "uncreatable_run_folder", "program": "train", "argv": [*TRAIN, *good, _run(blocker, "run")]},
        {  # the documented open node: +data.<key> replaces a key of the checkpoint's data config
            "name": "eval_open_data_node",
            "program": "evaluate",
            "argv": [f"ckpt_path={checkpoint}", "+data.num_workers=0", "split=tset", _run(root, "eval_open")],
        },
        {
            "name": "eval_misspelt_data_key",
            "program": "evaluate",
            "argv": [f"ckpt_path={checkpoint}", "+data.num_worker=0", _run(root, "eval_typo")],
        },
        {
            "name": "predict_without_images",
            "program": "predict",
            "argv": [f"ckpt_path={checkpoint}", _run(root, "p")],
        },
    ]
    cases += _untrusted_cases(root, checkpoint, good)
    return cases + _eval_cases(root) + _convert_cases(root, blocker)


class FileMaker:
    """An object whose unpickling creates the file `path` (as any code a pickle holds would run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def untrusted_checkpoint(root: Path, name: str, checkpoint: Path) -> tuple[Path, Path]:
    """Write root/<name>.ckpt: the msr-train `checkpoint` plus an object whose unpickling creates
    root/<name>.unpickled; return both paths."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    marker = root / f"{name}.unpickled"
    content["payload"] = FileMaker(marker)
    path = root / f"{name}.ckpt"
    torch.save(content, path)
    return path, marker


def _untrusted_cases(root: Path, checkpoint: Path, data: list[str]) -> list[dict]:
    """Return msr-train (init.weights), msr-eval and msr-predict given a checkpoint that only unpickling can
    read, and msr-predict allowed to unpickle it (trust_pickle=true)."""
    pictures = root / "one_picture"
    pictures.mkdir()
    Image.fromarray(np.full((SIZE, SIZE, 3), 90, dtype=np.uint8)).save(pictures / "a.png")
    files = {name: untrusted_checkpoint(root, name, checkpoint)[0] for name in UNTRUSTED_CASES}
    predict = [f"images={pictures}", "overlays=false"]
    return [
        _train("untrusted_init", root, data, f"init.weights={files['untrusted_init']}"),
        {
            "name": "untrusted_eval",
            "program": "evaluate",
            "argv": [f"ckpt_path={files['untrusted_eval']}", _run(root, "untrusted_eval")],
        },
        {
            "name": "untrusted_predict",
            "program": "predict",
            "argv": [f"ckpt_path={files['untrusted_predict']}", *predict, _run(root, "untrusted_predict")],
        },
        {
            "name": "trusted_predict",
            "program": "predict",
            "argv": [
                f"ckpt_path={files['trusted_predict']}",
                *predict,
                "trust_pickle=true",
                _run(root, "tp"),
            ],
        },
    ]


#: The cases of `_untrusted_cases`: case <name> reads root/<name>.ckpt; unpickling it makes <name>.unpickled.
UNTRUSTED_CASES = ("untrusted_init", "untrusted_eval", "untrusted_predict", "trusted_predict")


def _edit_upright_size(train: dict, val: dict) -> None:
    val["images"][0].update(width=SIZE, height=SIZE - 16)  # 5.png seen upright: 64 wide, 48 high


def _phone_photo(root: Path) -> list[str]:
    """Return the data overrides of a tiny COCO set whose val picture 5.png is a phone photo: stored 48 wide
    and 64 high with EXIF orientation 6 (turn 90°), and the file gives its upright size (64 x 48) without
    saying so (another tool than msr-convert): read as stored, its size fits only the upright reading."""
    data = _data(root, "exif_quarter_turn", _edit_upright_size)
    picture = root / "exif_quarter_turn" / "data" / "images" / "5.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (SIZE - 16, SIZE)).save(picture, exif=exif.tobytes())
    return data


def predict_cases(root: Path, checkpoint: Path) -> list[dict]:
    """Return msr-predict on 5 pictures whose third (c.png) is corrupt: stopping at it, and skipping it
    (test_work_kept.py runs them; run folders root/predict_corrupt and root/predict_skip)."""
    pictures = root / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c", "d", "e"):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(pictures / f"{name}.png")
    (pictures / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    common = [f"ckpt_path={checkpoint}", f"images={pictures}", "data.eval_batch_size=2", "overlays=false"]
    return [
        {"name": "predict_corrupt", "program": "predict", "argv": [*common, _run(root, "predict_corrupt")]},
        {
            "name": "predict_skip",
            "program": "predict",
            "argv": [*common, "data.skip_unreadable=true", _run(root, "predict_skip")],
        },
    ]


def _run(root: Path, name: str) -> str:
    """Return the hydra.run.dir override of a run folder root/name."""
    return f"hydra.run.dir={root / name}"


def _eval_cases(root: Path) -> list[dict]:
    """Return the msr-eval scoring cases: a ground truth with a 1-point polygon, results that are a JSON
    object, results with a NaN score."""
    gt = tiny_coco(root / "eval_data", _edit_val_polygon)["val"]
    good_gt = tiny_coco(root / "eval_good")["val"]
    result = {"image_id": 5, "category_id": 1, "segmentation": _rle(SIZE, SIZE), "score": 0.9}
    listed, as_object, nan = (root / name for name in ("results.json", "object.json", "nan.json"))
    listed.write_text(json.dumps([result]))
    as_object.write_text(json.dumps({"0": result}))
    nan.write_text(json.dumps([result, {**result, "score": math.nan}]))
    return [
        {"name": name, "program": "evaluate", "argv": [f"results={res}", f"ann_file={ann}", _run(root, name)]}
        for name, res, ann in (
            ("eval_polygon", listed, gt),
            ("results_object", as_object, good_gt),
            ("nan_score", nan, good_gt),
        )
    ]


def _convert_cases(root: Path, blocker: Path) -> list[dict]:
    """Return the msr-convert cases: an empty VIA file, an --out that cannot be written, and regions with
    no area or outside the picture (converted with warnings)."""
    folder = root / "via"
    folder.mkdir()
    Image.new("RGB", (SIZE, SIZE)).save(folder / "a.png")
    (folder / "empty.json").write_text("{}")
    regions = [
        {"shape_attributes": {"name": "rect", "x": 10, "y": 10, "width": 0, "height": 20}},  # no area
        {
            "shape_attributes": {
                "name": "polygon",
                "all_points_x": [200, 400, 300],
                "all_points_y": [200, 200, 400],
            }
        },
        {
            "shape_attributes": {
                "name": "polygon",
                "all_points_x": [40, 120, 40],
                "all_points_y": [10, 10, 50],
            }
        },
        {"shape_attributes": {"name": "rect", "x": 5, "y": 5, "width": 20, "height": 20}},
    ]
    (folder / "regions.json").write_text(json.dumps({"a.png": {"filename": "a.png", "regions": regions}}))
    return [
        {
            "name": "via_empty",
            "program": "convert",
            "argv": ["via", str(folder / "empty.json"), "--out", str(root / "o.json")],
        },
        {
            "name": "convert_unwritable_out",
            "program": "convert",
            "argv": ["via", str(folder / "regions.json"), "--out", str(blocker / "out.json")],
        },
        {
            "name": "convert_regions",
            "program": "convert",
            "argv": ["via", str(folder / "regions.json"), "--out", str(root / "regions_coco.json")],
        },
    ]
