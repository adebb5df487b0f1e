"""Unit tests of msr.training.tracking (mode, run identity, metadata) and of the figures (curves, PNGs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from msr.evaluation.calibration import CalibrationData
from msr.files import write_csv_atomic
from msr.training.callbacks.figures import per_class_ap
from msr.training.tracking import (
    RUN_FILE,
    has_wandb_credentials,
    hydra_run_identity,
    package_versions,
    persistent_run_identity,
    resolve_mode,
)
from msr.viz.calibration import (
    CALIBRATION_FIGURE_SIZE,
    calibration_figure,
    figure_to_array,
    reliability_curve,
)
from msr.viz.overlays import save_png, side_by_side


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_online_without_credentials_falls_back_to_offline(no_credentials, caplog):
    assert not has_wandb_credentials()
    assert resolve_mode("online") == "offline"
    assert "no W&B credentials" in caplog.text


def test_online_with_api_key_or_netrc_stays_online(no_credentials, monkeypatch):
    no_credentials.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    no_credentials.chmod(0o600)
    assert has_wandb_credentials() and resolve_mode("online") == "online"
    no_credentials.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("online") == "online"


def test_offline_and_disabled_never_look_for_credentials_and_bad_mode_is_named():
    assert resolve_mode("offline", credentials=False) == "offline"
    assert resolve_mode("disabled", credentials=False) == "disabled"
    with pytest.raises(ValueError, match="'dryrun'"):
        resolve_mode("dryrun")


def test_run_identity_is_stored_once_and_reused(tmp_path):
    first = persistent_run_identity(tmp_path, "exp-0", "exp/sweep")
    again = persistent_run_identity(tmp_path, "other", "other")
    assert again == first and len(first["id"]) == 8
    assert json.loads((tmp_path / RUN_FILE).read_text()) == first
    assert persistent_run_identity(tmp_path / "elsewhere", "exp", "exp")["id"] != first["id"]


def test_identity_outside_hydra_and_versions():
    assert hydra_run_identity("quickstart") == {"name": "quickstart", "group": "quickstart", "tags": []}
    versions = package_versions(("numpy", "no-such-distribution-xyz"))
    assert versions["numpy"] == np.__version__ and versions["no-such-distribution-xyz"] is None
    assert versions["python"].count(".") == 2


def test_reliability_curve_on_hand_built_points():
    pred = np.array([0.05, 0.08, 0.55, 0.95, 1.2, -0.1])
    true = np.array([0.2, 0.4, 0.5, 0.9, 0.7, 0.0])
    centres, means, counts = reliability_curve(pred, true, bins=10)
    np.testing.assert_allclose(centres, np.arange(10) / 10 + 0.05)
    # bin 0: 0.05, 0.08 and the clipped -0.1 -> mean(0.2, 0.4, 0.0); bin 5: 0.55; bin 9: 0.95 and clipped 1.2
    assert counts.tolist() == [3, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    np.testing.assert_allclose(means[[0, 5, 9]], [0.2, 0.5, 0.8])
    assert np.isnan(means[[1, 2, 3, 4, 6, 7, 8]]).all()


def test_calibration_figure_renders_at_its_size_with_and_without_predicted_iou():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 1, 50)
    true[:5] = 0  # unmatched detections are left out of the plots
    for pred in (np.clip(true + rng.normal(0, 0.1, 50), 0, 1), np.full(50, np.nan)):
        score = rng.uniform(0, 1, 50)
        data = CalibrationData(true, score, pred, score * np.nan_to_num(pred, nan=1.0))
        picture = figure_to_array(calibration_figure(data))
        assert picture.shape == (CALIBRATION_FIGURE_SIZE[1], CALIBRATION_FIGURE_SIZE[0], 3)
        assert picture.dtype == np.uint8 and picture.std() > 0


def test_side_by_side_png_and_per_class_csv(tmp_path):
    left = np.zeros((10, 6, 3), np.uint8)
    right = np.full((8, 5, 3), 7, np.uint8)
    pair = side_by_side(left, right, gap=2)
    assert pair.shape == (10, 13, 3)
    assert (pair[:, 6:8] == 255).all() and (pair[:8, 8:] == 7).all() and (pair[8:, 8:] == 255).all()
    path = save_png(pair, tmp_path / "a" / "pair.png")
    with Image.open(path) as image:
        assert image.size == (13, 10) and np.array_equal(np.asarray(image), pair)
    assert [p.name for p in path.parent.iterdir()] == ["pair.png"]  # no temp file left
    metrics = {
        "bbox/AP": 0.3,
        "bbox/AP-disc": 0.5,
        "segm/AP-disc": 0.4,
        "bbox/AP-ring": -1.0,
        "segm/AP-ring": float("nan"),
    }
    columns, rows = per_class_ap(metrics)
    assert columns == ["class", "bbox AP", "segm AP"]
    assert rows == [["disc", 0.5, 0.4], ["ring", -1.0, None]]
    text = write_csv_atomic(columns, rows, tmp_path / "ap.csv").read_text().splitlines()
    assert text == ["class,bbox AP,segm AP", "disc,0.5,0.4", "ring,-1.0,"]


def test_enlarge_scales_image_boxes_and_masks_consistently():
    import torch

    from msr.viz.overlays import enlarge_image, enlarge_instances

    image = torch.rand(3, 4, 6)
    masks = torch.zeros(2, 4, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    instances = {
        "boxes": torch.tensor([[2.0, 1.0, 5.0, 3.0], [0, 0, 1, 1]]),
        "masks": masks,
        "labels": [1, 2],
    }
    big = enlarge_image(image, 3)
    assert big.shape == (3, 12, 18) and torch.equal(big[:, ::3, ::3], image)
    out = enlarge_instances(instances, 3)
    assert out["masks"].shape == (2, 12, 18) and out["masks"][0].sum() == 9 * masks[0].sum()
    assert out["boxes"][0].tolist() == [6.0, 3.0, 15.0, 9.0] and out["labels"] == [1, 2]
    probs = torch.rand(2, 1, 4, 6)  # model output layout
    assert enlarge_instances({"boxes": instances["boxes"], "masks": probs}, 2)["masks"].shape == (2, 1, 8, 12)
    empty = {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, 1, 4, 6)}  # no detection
    assert enlarge_instances(empty, 2)["masks"].shape == (0, 1, 8, 12)
    assert enlarge_image(image, 1) is image


def test_only_rank_zero_stores_the_run_identity(tmp_path, monkeypatch):
    from msr.training.tracking import make_wandb_logger

    monkeypatch.setenv("RANK", "1")  # as torchrun sets it, before any process group exists
    make_wandb_logger(str(tmp_path / "rank1"), mode="offline")
    assert not (tmp_path / "rank1" / RUN_FILE).exists()  # no second writer racing rank 0
    monkeypatch.setenv("RANK", "0")
    logger = make_wandb_logger(str(tmp_path / "rank0"), mode="offline")
    stored = json.loads((tmp_path / "rank0" / RUN_FILE).read_text())
    assert logger.version == stored["id"]  # constructing the logger starts no run


def test_rows_a_resumed_wandb_run_already_holds_are_kept_and_said_once(tmp_path, monkeypatch, caplog):
    import wandb

    from msr.training.wandb_logger import TrainingStepWandbLogger

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    # a run of its own, whatever run an earlier test of this process left open (W&B's default returns it)
    run = wandb.init(mode="offline", dir=str(tmp_path), project="msr-test", reinit="create_new")
    try:
        logger = TrainingStepWandbLogger(experiment=run)
        logger.log_metrics({"train/loss": 1.0}, step=10)
        logger.log_metrics({"train/loss": 0.9}, step=11)
        with caplog.at_level("WARNING"):
            logger.log_metrics({"train/loss": 5.0}, step=8)  # a resumed run re-logging older steps
            logger.log_metrics({"train/loss": 5.0}, step=9)
        assert caplog.text.count("already holds the steps before 11") == 1
        logger.log_metrics({"train/loss": 0.8}, step=12)
    finally:
        run.finish()
    from wandb_files import history_rows, offline_runs, read_records, run_log

    records = [r for r in read_records(run_log(offline_runs(tmp_path)[0])) if r.HasField("history")]
    steps = [r.history.step.num for r in records]
    losses = [row["train/loss"] for row in history_rows(records)]
    assert (steps, losses) == ([10, 11, 12], [1.0, 0.9, 0.8])  # steps 10 and 11 keep their values; 12 lands
    with pytest.raises(ValueError, match="prefix"):
        TrainingStepWandbLogger(prefix="x", offline=True)
