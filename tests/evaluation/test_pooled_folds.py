"""K-fold pooling: the folds' per-picture evaluations pooled are COCOeval's on the union of their val
pictures, and msr-aggregate makes the folds of a seed one run of one variant, checked against COCOeval
on the union computed here independently."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from msr.cli.aggregate import main as aggregate_main
from msr.data.folds import split_fold
from msr.errors import EvaluationError
from msr.evaluation.bootstrap import bootstrap_counts, coco_ap, evaluate_per_image, replicate_aps
from msr.evaluation.calibration import class_score_results
from msr.evaluation.coco_eval import evaluate_coco
from msr.evaluation.pooling import pool_pictures
from msr.evaluation.ties import tied_detections
from msr.studies.aggregate import AggregateError, aggregate, quick_look

H, W = 40, 48
PICTURES = 24
FOLDS = 3


def make_set(synth) -> dict:
    """Return a COCO dict of PICTURES pictures with 1-4 rectangles in 3 categories and a crowd region in
    every fourth picture."""
    rng = np.random.default_rng(7)
    images, anns = [], []
    for i in range(PICTURES):
        image_id = i + 1
        images.append({"id": image_id, "height": H, "width": W, "file_name": f"{image_id}.png"})
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = int(rng.integers(0, W - 16)), int(rng.integers(0, H - 16))
            box = (x0, y0, x0 + int(rng.integers(5, 16)), y0 + int(rng.integers(5, 16)))
            cat = synth.CAT_IDS[int(rng.integers(0, 3))]
            anns.append(synth.annotation(len(anns) + 1, image_id, cat, H, W, box))
        if i % 4 == 0:
            crowd = (W - 14, H - 14, W - 1, H - 1)
            anns.append(synth.annotation(len(anns) + 1, image_id, synth.CAT_IDS[0], H, W, crowd, crowd=1))
    return {"images": images, "annotations": anns, "categories": [dict(c) for c in synth.CATEGORIES]}


def make_results(synth, gt: dict, seed: int, with_iou: bool) -> list[dict]:
    """Return segm results on every picture of `gt`: shifted copies of most objects and false positives,
    class scores on a 0.1 grid (ties across pictures, so that the order of pictures matters) and, with
    `with_iou`, a predicted mask IoU and the score class score × IoU."""
    rng = np.random.default_rng(100 + seed)
    out = []
    for ann in (a for a in gt["annotations"] if not a["iscrowd"]):
        if rng.random() < 0.25:
            continue
        x, y, w, h = ann["bbox"]
        dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
        box = (max(x + dx, 0), max(y + dy, 0), min(x + w + dx, W), min(y + h + dy, H))
        out.append((ann["image_id"], ann["category_id"], box))
    for image in gt["images"]:
        for _ in range(int(rng.integers(0, 2))):
            x0, y0 = int(rng.integers(0, W - 8)), int(rng.integers(0, H - 8))
            out.append((image["id"], synth.CAT_IDS[int(rng.integers(0, 3))], (x0, y0, x0 + 6, y0 + 6)))
    results = []
    for image_id, cat, box in out:
        mask = synth.rle_of(synth.rect_mask(H, W, *box))
        record = {"image_id": image_id, "category_id": cat, "segmentation": mask}
        score = float(rng.integers(1, 10)) / 10
        if with_iou:
            iou = float(rng.uniform(0.2, 1.0))
            record.update(class_score=score, mask_iou=iou, score=score * iou)
        else:
            record["score"] = score
        results.append(record)
    return results


def folds_of(gt: dict) -> list[dict]:
    """Return the val COCO dict of each fold (msr.data.folds' own split of the pooled set)."""
    return [split_fold(gt, FOLDS, k, seed=0)[1] for k in range(FOLDS)]


def on(fold: dict, results: list[dict]) -> list[dict]:
    """Return the results on the pictures of `fold`."""
    ids = {im["id"] for im in fold["images"]}
    return [r for r in results if r["image_id"] in ids]


def union_ap(gt: dict, results: list[dict]) -> float:
    """Return COCOeval's segm AP of `results` on the whole set (pycocotools)."""
    return evaluate_coco(results, gt, "segm", backend="pycocotools", per_class=False)["segm/AP"]


def test_pooled_folds_are_cocoevals_evaluation_of_the_union(synth):
    gt = make_set(synth)
    results = make_results(synth, gt, seed=0, with_iou=False)
    folds = folds_of(gt)
    assert sorted(im["id"] for f in folds for im in f["images"]) == list(range(1, PICTURES + 1))
    pooled = pool_pictures([evaluate_per_image(on(f, results), f) for f in folds])
    assert tied_detections(pooled) > 10  # ties across pictures: the pooled order of pictures matters
    assert coco_ap(pooled) == pytest.approx(union_ap(gt, results), abs=1e-12)
    whole = evaluate_per_image(results, gt)
    draws = bootstrap_counts(PICTURES, 50, seed=3)
    assert np.array_equal(pooled.image_ids, whole.image_ids)
    np.testing.assert_allclose(replicate_aps(pooled, draws, {}), replicate_aps(whole, draws, {}), atol=1e-12)

    with pytest.raises(EvaluationError, match="disjoint"):
        pool_pictures([evaluate_per_image(on(folds[0], results), folds[0])] * 2)


def write_run(root, head: str, seed: int, fold: int, gt_fold: dict, results: list[dict]) -> None:
    """Write one job folder: fold `fold` of a 3-fold cross-validation, scored on its val pictures."""
    job = root / f"{head}_s{seed}_f{fold}"
    (job / ".hydra").mkdir(parents=True)
    (job / "eval").mkdir()
    ann_file = job / "val.json"
    ann_file.write_text(json.dumps(gt_fold))
    overrides = [f"head={head}", f"seed={seed}", f"data.folds={FOLDS}", f"data.fold={fold}"]
    data = {"root": "/x", "folds": FOLDS, "fold": fold, "fold_seed": 0}
    config = {"seed": seed, "head": head, "data": data}
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / "eval" / "segm_results.json").write_text(json.dumps(results))
    metrics = {"segm/AP": union_ap(gt_fold, results), "ann_file": str(ann_file)}
    (job / "eval" / "val_metrics.json").write_text(json.dumps(metrics))


def test_msr_aggregate_pools_the_folds_of_a_seed_into_one_run(synth, tmp_path, capsys):
    gt = make_set(synth)
    folds = folds_of(gt)
    results = {
        (head, seed): make_results(synth, gt, seed + (10 if head == "maskiou" else 0), head == "maskiou")
        for head in ("none", "maskiou") for seed in (0, 1)
    }
    for (head, seed), found in results.items():
        for k, fold in enumerate(folds):
            write_run(tmp_path / "runs", head, seed, k, fold, on(fold, found))
    md, csv_path = aggregate([tmp_path / "runs"], tmp_path / "study", reference="head=none", replicates=100)
    record = json.loads(csv_path.with_suffix(".json").read_text())
    by_name = {v["variant"]: v for v in record["variants"]}
    assert sorted(by_name) == ["head=maskiou", "head=none"]  # data.fold names no variant
    maskiou = by_name["head=maskiou"]
    counts = (maskiou["seeds"], maskiou["folds"], maskiou["val pictures"], len(maskiou["runs"]))
    assert counts == (2, 3, 24, 6)

    # independently: COCOeval on the union of the folds' val pictures, each scored by its fold's model
    delta = [union_ap(gt, results["maskiou", s]) - union_ap(gt, results["none", s]) for s in (0, 1)]
    gain = [
        union_ap(gt, results["maskiou", s]) - union_ap(gt, class_score_results(results["maskiou", s]))
        for s in (0, 1)
    ]
    contrasts = maskiou["contrasts"]
    assert contrasts["delta segm AP vs reference"]["per seed"] == pytest.approx(delta, abs=1e-12)
    assert contrasts["rescoring gain"]["per seed"] == pytest.approx(gain, abs=1e-12)
    assert contrasts["delta segm AP vs reference"]["over training runs"]["seeds"] == 2
    # the table's per-seed value is the mean over the seed's folds
    fold_mean = np.mean([r["segm/AP"] for r in maskiou["runs"] if r["seed"] == 0])
    assert fold_mean == pytest.approx(np.mean([union_ap(f, on(f, results["maskiou", 0])) for f in folds]))
    text = md.read_text()
    assert "`head=maskiou`: 3 folds pooled, 2 seeds of 3 fold models each; 24 val pictures" in text
    assert re.search(r"\| `head=maskiou` +\| +2 +\|", text)  # seeds, not runs
    assert_png(md.with_suffix(".png"))  # the contrasts drawn beside the table

    aggregate_main([str(tmp_path / "runs"), "--out", str(tmp_path / "cli"), "--reference", "head=none",
                    "--bootstrap", "20"])
    printed = capsys.readouterr().out
    assert "24 val pictures, the union of the folds' val pictures" in printed
    assert f"{tmp_path / 'cli.png'} (the contrasts drawn)" in printed
    assert_png(tmp_path / "cli.png")


def test_a_seed_without_every_fold_is_left_out_and_named(synth, tmp_path):
    gt = make_set(synth)
    folds = folds_of(gt)
    for seed in (0, 1):
        found = make_results(synth, gt, seed=seed, with_iou=False)
        for k, fold in enumerate(folds):
            if (seed, k) != (1, 2):
                write_run(tmp_path / "runs", "none", seed, k, fold, on(fold, found))
    text = quick_look([tmp_path / "runs"])
    assert (
        "`data.folds=3 head=none`: 3 folds pooled, 1 seed of 3 fold models each; "
        "left out: seed 1 (missing fold 2)"
    ) in text


def test_a_pooled_variant_and_one_scored_on_other_pictures_are_not_paired(synth, tmp_path):
    gt = make_set(synth)
    folds = folds_of(gt)
    found = make_results(synth, gt, seed=0, with_iou=False)
    for k, fold in enumerate(folds):
        write_run(tmp_path / "runs", "none", 0, k, fold, on(fold, found))
    other = tmp_path / "runs" / "one_fold"
    write_run(tmp_path / "other", "maskiou", 0, 0, folds[0], on(folds[0], found))
    (tmp_path / "other" / "maskiou_s0_f0").rename(other)
    config = yaml.safe_load((other / ".hydra" / "config.yaml").read_text())
    config["data"] = {"root": "/x", "folds": None}  # one val set, not a fold of a cross-validation
    (other / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = json.loads((other / "eval" / "val_metrics.json").read_text())
    metrics["ann_file"] = str(other / "val.json")
    (other / "eval" / "val_metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(AggregateError, match=r"different val pictures \(24 and 8\)"):
        aggregate([tmp_path / "runs"], tmp_path / "study", replicates=20)


def assert_png(path) -> None:
    """Assert that `path` is a PNG that PIL reads, of a size a page can hold."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert 600 <= width <= 2000 and 200 <= height <= 2000, image.size
