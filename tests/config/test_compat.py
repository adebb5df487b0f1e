"""msr.compat against the installed Lightning and Hydra: each internal msr relies on is still there and
behaves as msr expects. A failure names the package version and what changed."""

from __future__ import annotations

import inspect
import sys
from importlib import metadata

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from omegaconf import open_dict, read_write
from torch.utils.data import DataLoader, TensorDataset

from msr import compat
from msr.cli.common import CONFIG_DIR
from msr.training.csv_logger import ResumableExperimentWriter

LIGHTNING = f"lightning {metadata.version('lightning')}"
HYDRA = f"hydra-core {metadata.version('hydra-core')}"


class _Tiny(pl.LightningModule):
    """One linear layer, trained by SGD on random numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]


class _AtEpochEnd(pl.Callback):
    """Keeps the training state as `compat.training_state` gives it at the end of the training epoch."""

    state: dict | None = None

    def on_train_epoch_end(self, trainer, pl_module):
        self.state = compat.training_state(trainer)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Return (trainer, the training state at the end of its one epoch of 2 steps)."""
    keeper = _AtEpochEnd()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[keeper], default_root_dir=tmp_path_factory.mktemp("fit"),
    )
    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer.fit(_Tiny(), data)
    return trainer, keeper.state


def test_the_training_state_is_what_a_checkpoint_holds(fitted):
    _, state = fitted
    expected = {"state_dict", "loops", "optimizer_states", "lr_schedulers", "global_step", "epoch"}
    missing = expected - set(state)
    assert not missing, f"{LIGHTNING}: the checkpoint connector's dict lacks {missing}"
    assert state["global_step"] == 2


def test_the_fit_loop_state_has_the_keys_a_resume_rewrites(fitted):
    _, state = fitted
    fit_loop = compat.fit_loop_state(state)
    assert fit_loop is not None, f"{LIGHTNING}: no {'.'.join(compat.FIT_LOOP)} in the training state"
    keys = {
        compat.EPOCH_PROGRESS,
        compat.BATCH_PROGRESS,
        compat.SCHEDULER_PROGRESS,
        compat.OPTIMIZER_PROGRESS,
        compat.VAL_BATCH_PROGRESS,
        compat.EPOCH_LOOP_STATE,
    }
    assert keys <= set(fit_loop), f"{LIGHTNING} renamed the fit-loop state's {sorted(keys - set(fit_loop))}"
    assert compat.saved_at_epoch_end(fit_loop), f"{LIGHTNING}: an epoch-end state is no longer recognised"
    assert compat.saved_logging_step(fit_loop) == 2, f"{LIGHTNING}: the loggers' step is not saved as before"
    compat.as_next_epoch_start(fit_loop)
    assert not compat.saved_at_epoch_end(fit_loop)
    assert fit_loop[compat.EPOCH_PROGRESS]["total"]["completed"] == 1
    assert fit_loop[compat.BATCH_PROGRESS]["current"]["completed"] == 0


def test_the_loggers_step_counter_is_on_the_epoch_loop(fitted):
    trainer, _ = fitted
    loop = trainer.fit_loop.epoch_loop
    assert hasattr(loop, compat.LOGGING_STEP), f"{LIGHTNING}: the epoch loop has no {compat.LOGGING_STEP}"
    compat.set_logging_step(trainer, 7)
    assert trainer.fit_loop.epoch_loop._batches_that_stepped == 7


def test_loggers_cache_their_experiment_where_msr_looks(tmp_path):
    csv = CSVLogger(tmp_path)
    assert compat.cached_experiment(csv) is None
    writer = csv.experiment
    assert compat.cached_experiment(csv) is writer, f"{LIGHTNING}: CSVLogger no longer caches its writer"
    compat.set_cached_experiment(csv, None)
    assert csv.experiment is not writer
    wandb = WandbLogger(save_dir=str(tmp_path), mode="disabled")
    assert hasattr(wandb, "_experiment") and compat.cached_experiment(wandb) is None, (
        f"{LIGHTNING}: WandbLogger keeps its run elsewhere; msr.training.tracking.finish_wandb would miss it"
    )


def test_the_resumable_csv_writer_sets_what_lightnings_writer_sets(tmp_path):
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    theirs = set(vars(ExperimentWriter(str(tmp_path / "a"))))
    ours = set(vars(ResumableExperimentWriter(str(tmp_path / "b"))))
    assert theirs - {"_fs"} <= ours, (
        f"{LIGHTNING}: ExperimentWriter now also sets {sorted(theirs - ours - {'_fs'})}; "
        "ResumableExperimentWriter (which skips its __init__) must set them too"
    )


@pytest.fixture
def hydra_job():
    """Make msr-train's composed config Hydra's current job config for the test; return it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose("train", overrides=["hydra.run.dir=/runs/a"], return_hydra_config=True)
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    yield config
    HydraConfig.instance().cfg = saved


def test_the_job_config_is_hydras_and_can_be_swapped(hydra_job):
    live = compat.hydra_job_config()
    assert live is not None and live.hydra.run.dir == "/runs/a", f"{HYDRA}: HydraConfig holds no job config"
    other = HydraConfig.instance().cfg.copy()
    with compat.use_hydra_config(other):
        assert HydraConfig.instance().cfg is other and compat.hydra_job_config() is other
    assert compat.hydra_job_config() is live


def test_lightnings_ddp_relaunch_follows_argv_and_the_job_run_dir(hydra_job, monkeypatch):
    # msr.cli.ddp pins sys.argv and the job's hydra.run.dir so that relaunched ranks run this job only
    from lightning.fabric.strategies.launchers.subprocess_script import _hydra_subprocess_cmd

    from msr.cli.ddp import pinned_argv

    monkeypatch.setattr(sys, "argv", pinned_argv("msr-train", "/runs/a/.ddp"))
    live = compat.hydra_job_config()
    with read_write(live.hydra), open_dict(live.hydra):
        live.hydra.run.dir = "/runs/job_3"
    command, _ = _hydra_subprocess_cmd(local_rank=1)
    assert "--config-path=/runs/a/.ddp" in command and "--config-name=config" in command, (
        f"{LIGHTNING}: the DDP relaunch no longer re-runs sys.argv; msr.cli.ddp.ddp_job_scope must change"
    )
    assert 'hydra.run.dir="/runs/job_3"' in command, (
        f"{LIGHTNING}: the DDP relaunch no longer takes Hydra's current run.dir; msr.cli.ddp must change"
    )


def test_a_failed_jobs_exception_is_found():
    error = ValueError("broken")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_error(failed) is error, f"{HYDRA}: JobReturn keeps a failed job's exception elsewhere"
    assert compat.job_error(JobReturn(status=JobStatus.COMPLETED, _return_value=3)) is None


@pytest.mark.parametrize(
    ("inner", "not_found", "first"),
    [
        ({"_target_": "nowhere.Thing"}, True, "Error locating target 'nowhere.Thing'"),
        ({"_target_": "msr.compat.job_error", "x": 1}, False, "Error in call to target 'msr.compat.job"),
    ],
)
def test_hydras_instantiation_error_text_names_the_node(inner, not_found, first):
    with pytest.raises(InstantiationException) as info:
        instantiate({"_target_": "builtins.dict", "outer": {"inner": inner}})
    key, line, target_not_found = compat.instantiation_error(info.value)
    assert key == "outer.inner", f"{HYDRA}: no 'full_key:' line names the node any more: {info.value}"
    assert line.startswith(first) and "HYDRA_FULL_ERROR" not in line, f"{HYDRA}: first line now {line!r}"
    assert target_not_found is not_found, f"{HYDRA}: an unknown _target_ is now worded {line!r}"


def test_the_submitit_launchers_job_call_is_what_msrs_launcher_overrides():
    launcher = pytest.importorskip("hydra_plugins.hydra_submitit_launcher.submitit_launcher")
    from hydra.core.singleton import Singleton

    parameters = list(inspect.signature(launcher.BaseSubmititLauncher.__call__).parameters)
    assert parameters == ["self", "sweep_overrides", "job_dir_key", "job_num", "job_id", "singleton_state"], (
        f"hydra-submitit-launcher {metadata.version('hydra-submitit-launcher')}: its job call now takes "
        f"{parameters}; hydra_plugins/msr_launcher overrides it"
    )
    assert callable(getattr(Singleton, "set_state", None)), f"{HYDRA}: Singleton.set_state is gone"
