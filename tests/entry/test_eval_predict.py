"""msr-eval (checkpoint and results-file modes, 1 and 2 DDP processes) and msr-predict through Hydra."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image
from support.cli import run_batch, run_cli
from support.paths import BALLOON_DIR, require_balloon, require_fixture

from msr.viz.labels import enlargement_for

#: The numbers pycocotools prints for the fixture's fake results (val2014_fake_eval_res.txt).
FIXTURE_AP = {"segm": 0.3195452758576433, "bbox": 0.5045806987249628}


def eval_checkpoint(trained_run, env, folder, *extra):
    """Return the metrics msr-eval writes for the tiny run's best checkpoint (on its training run's data)."""
    ckpt = trained_run["run"] / "checkpoints" / "best.ckpt"
    proc = run_cli(
        "evaluate",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={folder}",
        *extra,
        env=env,
        cwd=folder.parent,
    )
    (folder / "stdout.txt").write_text(proc.stdout)
    return json.loads((folder / "eval" / "val_metrics.json").read_text())


def comparable(metrics):
    """Return the AP and calibration metrics; an undefined one (null in the strict JSON files) as NaN."""
    return {
        k: math.nan if v is None else v
        for k, v in metrics.items()
        if k.startswith(("bbox/", "segm/", "calib/"))
    }


def assert_same_metrics(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], abs=1e-12), key


@pytest.fixture(scope="module")
def single_eval(trained_run, cli_env, tmp_path_factory):
    """Return (metrics, run folder) of msr-eval on the tiny run's best checkpoint in one process."""
    folder = tmp_path_factory.mktemp("single_eval") / "eval"
    return eval_checkpoint(trained_run, cli_env, folder), folder


def test_eval_of_checkpoint_reproduces_training_metrics(trained_run, single_eval):
    metrics, folder = single_eval
    assert_same_metrics(comparable(metrics), comparable(trained_run["metrics"]))
    # where the outputs went: the first and the last line, and the calibration plot at the checkpoint's step
    lines = [line for line in (folder / "stdout.txt").read_text().splitlines() if line.strip()]
    assert lines[0] == f"msr-eval: run folder {folder}"
    assert lines[-1].startswith(f"msr-eval: done; outputs in {folder}: eval/bbox_results.json, ")
    assert (folder / "figures" / "step_0000004" / "calibration.png").is_file()
    log = (folder / "evaluate.log").read_text()
    assert "| segm AP " in log and lines[-1] in log


def test_eval_changes_a_key_of_the_stored_data_config(trained_run, cli_env, tmp_path):
    """+data.<key>=<value> replaces a key of the training run's data config (here: 3 of 5 val pictures)."""
    metrics = eval_checkpoint(trained_run, cli_env, tmp_path / "three", "+data.num_val=3")
    segm = json.loads((tmp_path / "three" / "eval" / "segm_results.json").read_text())
    assert segm and {r["image_id"] for r in segm} <= {1, 2, 3}
    assert metrics["calib/num_detections"] == len(segm)
    five = json.loads((trained_run["run"] / "eval" / "segm_results.json").read_text())
    assert {r["image_id"] for r in five} - {1, 2, 3}  # the training run's evaluation did see more pictures


def test_eval_under_ddp_two_processes_equals_one(trained_run, cli_env, tmp_path, single_eval):
    """5 val pictures (odd) over 2 gloo ranks: the sampler pads one duplicate that must not count."""
    one, one_folder = single_eval
    two = eval_checkpoint(
        trained_run,
        cli_env,
        tmp_path / "two",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
    )
    assert one["calib/num_detections"] > 0
    assert_same_metrics(comparable(two), comparable(one))
    segm_one = json.loads((one_folder / "eval" / "segm_results.json").read_text())
    segm_two = json.loads((tmp_path / "two" / "eval" / "segm_results.json").read_text())
    assert len(segm_two) == len(segm_one)


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_eval_scores_results_file_exactly(backend, cli_env, tmp_path):
    fixture = require_fixture()
    ann = fixture / "instances_val2014_100.json"
    for iou_type, results in (("segm", "fakesegm"), ("bbox", "fakebbox")):
        out = tmp_path / iou_type
        proc = run_cli(
            "evaluate",
            f"results={fixture / f'instances_val2014_{results}100_results.json'}",
            f"ann_file={ann}",
            f"evaluation.backend={backend}",
            f"hydra.run.dir={out}",
            env=cli_env,
            cwd=tmp_path,
        )
        metrics = json.loads((out / "eval" / "scored_metrics.json").read_text())
        assert metrics[f"{iou_type}/AP"] == FIXTURE_AP[iou_type]
        assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in proc.stdout


def test_predict_writes_results_json_and_overlays(trained_run, cli_env, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    # (height, width) as seen upright; d.jpg is a phone photo stored 80 wide, 128 high, tagged "turn 90°"
    sizes = {"a.png": (96, 128), "b.jpg": (128, 80), "c.png": (128, 128), "d.jpg": (80, 128)}
    exif = Image.Exif()
    exif[0x0112] = 6
    for name, (h, w) in sizes.items():
        if name == "d.jpg":
            Image.effect_noise((h, w), 60).convert("RGB").save(pictures / name, exif=exif.tobytes())
        else:
            Image.effect_noise((w, h), 60).convert("RGB").save(pictures / name)
    out = tmp_path / "predict"
    ckpt = trained_run["run"] / "checkpoints" / "best.ckpt"
    overrides = [f"ckpt_path={ckpt}", f"images={pictures}", "score_thresh=0.0", f"hydra.run.dir={out}"]
    proc = run_cli("predict", *overrides, env=cli_env, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[0] == f"msr-predict: run folder {out}"
    assert lines[-1].startswith(f"msr-predict: done; outputs in {out}")
    images = json.loads((out / "images.json").read_text())
    assert {i["file_name"]: (i["height"], i["width"]) for i in images} == sizes
    tagged = [(i["file_name"], i.get("exif_orientation"), i.get("turned_upright")) for i in images]
    assert [t for t in tagged if t[1] is not None] == [("d.jpg", 6, True)]
    assert "1 pictures carry an EXIF orientation (first: d.jpg); they were turned upright" in proc.stdout
    ids = {i["id"] for i in images}
    segm = json.loads((out / "segm_results.json").read_text())
    bbox = json.loads((out / "bbox_results.json").read_text())
    assert segm and len(segm) == len(bbox)
    for res in segm:
        assert res["image_id"] in ids and 1 <= res["category_id"] <= 6
        # mask_iou is the head's raw regression output (paper): finite, not clamped to [0, 1]
        assert set(res["segmentation"]) == {"size", "counts"} and math.isfinite(res["mask_iou"])
        height, width = res["segmentation"]["size"]
        assert (height, width) == sizes[next(i["file_name"] for i in images if i["id"] == res["image_id"])]
        assert res["score"] == pytest.approx(res["class_score"] * res["mask_iou"], rel=1e-5)
    # the results load in pycocotools against a GT made of images.json
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": [],
        "categories": [{"id": i, "name": str(i)} for i in range(1, 7)],
    }
    gt.createIndex()
    assert len(gt.loadRes(segm).getAnnIds()) == len(segm)
    for name, (h, w) in sizes.items():
        with Image.open(out / "overlays" / f"{name.rsplit('.', 1)[0]}.png") as overlay:
            overlay.verify()
        with Image.open(out / "overlays" / f"{name.rsplit('.', 1)[0]}.png") as overlay:
            factor = enlargement_for(h, w)  # small pictures are drawn larger, by a whole factor
            assert overlay.size == (w * factor, h * factor) and overlay.mode == "RGB"


@pytest.fixture(scope="module")
def refusals(tmp_path_factory, trained_run, cli_env) -> dict[str, dict]:
    """Return {case: {"rc", "stdout", "stderr"}} of msr-eval runs that must stop before any work (no
    checkpoint, a corrupt one, data of other classes: the last only where ../shared holds the balloon
    set), all run by the real entry point in one process; the "corrupt" case's "file" is the file given."""
    root = tmp_path_factory.mktemp("refusals")
    broken = root / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    only_last = root / "short_run" / "checkpoints"
    only_last.mkdir(parents=True)
    (only_last / "last.ckpt").write_bytes(b"a run stopped before its first evaluation")
    overrides = {
        "no checkpoint": [],
        "corrupt": [f"ckpt_path={broken}"],
        "no best": [f"ckpt_path={only_last / 'best.ckpt'}"],
    }
    if BALLOON_DIR.is_dir():
        ckpt = trained_run["run"] / "checkpoints" / "best.ckpt"
        balloon = ["data=balloon", f"data.root={BALLOON_DIR}", f"data.cache_dir={root / 'cache'}"]
        overrides["other classes"] = [*balloon, f"ckpt_path={ckpt}"]
    cases = [
        {"name": name, "program": "evaluate", "argv": [*argv, f"hydra.run.dir={root / str(i)}"]}
        for i, (name, argv) in enumerate(overrides.items())
    ]
    results = run_batch(cases, cli_env, root)
    results["corrupt"]["file"] = broken
    results["no best"]["file"] = only_last / "best.ckpt"
    return results


def test_eval_without_checkpoint_or_results_says_what_to_give(refusals):
    assert refusals["no checkpoint"]["rc"] == 2
    assert "msr-eval: error: give ckpt_path=<checkpoint>" in refusals["no checkpoint"]["stderr"]


def test_eval_of_a_corrupt_checkpoint_names_the_file(refusals):
    case = refusals["corrupt"]
    assert case["rc"] == 2
    assert f"msr-eval: error: {case['file']}: not a checkpoint written by msr-train" in case["stderr"]


def test_eval_of_a_missing_best_checkpoint_names_those_that_exist(refusals):
    case = refusals["no best"]
    assert case["rc"] == 2
    folder = case["file"].parent
    line = f"msr-eval: error: checkpoint not found: {case['file']}; {folder} holds last.ckpt"
    assert line in case["stderr"]


def test_eval_on_data_with_other_classes_is_refused(refusals):
    require_balloon()
    case = refusals["other classes"]
    assert case["rc"] == 2
    assert "trained on 6 categories" in case["stderr"] and "the data has 1" in case["stderr"]
