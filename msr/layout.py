"""Where things lie: every path inside a run folder and inside the head-only protocol's trunk cache.

A run folder is what one msr-train, msr-eval or msr-predict job writes (Hydra's output dir). Each path
inside it is named here once and used by training (through the configs' `${msr.run:<name>}` resolver and
the callbacks), the trunk cache, msr-aggregate and the scripts in experiments/:

    .hydra/config.yaml, .hydra/overrides.yaml   what Hydra composed (written by Hydra)
    run_config.json                             the resolved config and the code (commit, packages)
    train.log                                   the job's log (Hydra names it after the program)
    checkpoints/last.ckpt, checkpoints/best.ckpt
    eval/<split>_metrics.json, eval/<iou type>_results.json, eval/scored_metrics.json
    figures/step_<N>/...                        pictures of every evaluation
    csv/metrics.csv                             every logged scalar by training step (any logger)
    wandb/, wandb_run.json                      with logger=wandb (the W&B run and its identity)
    .ddp/config.yaml, .ddp/head_pass.json       what DDP processes that Lightning starts compose
    .msr_run.lock                               held by the run that runs in the folder

The trunk cache (`protocol.trunk_cache`, default `$MSR_CACHE_DIR/trunks`) holds one folder per trunk key:
`<key>/run/` is the trunk's own msr-train run folder, `<key>/trunk.json` records it as finished, and
`<key>.lock` serialises the jobs that need the same trunk at the same time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The named paths of a run folder, relative to it (the names the `msr.run` resolver takes).
RUN_PATHS = {
    "hydra": ".hydra",
    "hydra_config": ".hydra/config.yaml",
    "overrides": ".hydra/overrides.yaml",
    "run_config": "run_config.json",
    "summary": "summary.json",
    "checkpoints": "checkpoints",
    "last_checkpoint": "checkpoints/last.ckpt",
    "best_checkpoint": "checkpoints/best.ckpt",
    "eval": "eval",
    "figures": "figures",
    "wandb_run": "wandb_run.json",
    "csv": "csv",
    "ddp": ".ddp",
    "lock": ".msr_run.lock",
}
#: What a training run leaves in its folder that another run there would mix with its own.
RUN_OUTPUTS = ("checkpoints", "csv", "eval", "figures", "run_config", "summary", "wandb_run")
#: The metrics file inside the csv logger's folder.
CSV_METRICS = "metrics.csv"
#: The file of msr-eval's scoring of a saved results file, inside `eval/`.
SCORED_METRICS = "scored_metrics.json"


def metrics_name(split: str) -> str:
    """Return the name of an evaluation's metrics file inside `eval/` (`<split>_metrics.json`)."""
    return f"{split}_metrics.json"


def results_name(iou_type: str) -> str:
    """Return the name of an evaluation's COCO results file inside `eval/` (`<iou_type>_results.json`)."""
    return f"{iou_type}_results.json"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder `root` (nothing is created)."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    def path(self, name: str) -> Path:
        """Return the path of the named entry of RUN_PATHS; KeyError names the known ones."""
        if name not in RUN_PATHS:
            raise KeyError(f"no run path named {name!r}; known: {', '.join(RUN_PATHS)}")
        return self.root / RUN_PATHS[name]

    @property
    def hydra_config(self) -> Path:
        """Return `.hydra/config.yaml`: the composed config of the job."""
        return self.path("hydra_config")

    @property
    def overrides(self) -> Path:
        """Return `.hydra/overrides.yaml`: the job's command-line overrides."""
        return self.path("overrides")

    @property
    def run_config(self) -> Path:
        """Return `run_config.json`: the resolved config and the code that ran."""
        return self.path("run_config")

    def log(self, program: str = "train") -> Path:
        """Return the job's log file, `<program>.log` (Hydra names it after the program's module)."""
        return self.root / f"{program}.log"

    @property
    def checkpoints(self) -> Path:
        """Return the checkpoint folder."""
        return self.path("checkpoints")

    @property
    def last_checkpoint(self) -> Path:
        """Return `checkpoints/last.ckpt`: the latest training state, what a resume starts from."""
        return self.path("last_checkpoint")

    @property
    def best_checkpoint(self) -> Path:
        """Return `checkpoints/best.ckpt`: the state with the best val segm AP so far."""
        return self.path("best_checkpoint")

    @property
    def summary(self) -> Path:
        """Return `summary.json`: the final metrics of a finished training run and its global step."""
        return self.path("summary")

    @property
    def eval(self) -> Path:
        """Return the folder of the evaluation files."""
        return self.path("eval")

    def metrics(self, split: str = "val") -> Path:
        """Return `eval/<split>_metrics.json`: the metrics of the latest evaluation on `split`."""
        return self.eval / metrics_name(split)

    def results(self, iou_type: str = "segm") -> Path:
        """Return `eval/<iou_type>_results.json`: the COCO results of the latest evaluation."""
        return self.eval / results_name(iou_type)

    @property
    def scored_metrics(self) -> Path:
        """Return `eval/scored_metrics.json`: metrics of the saved results scored again (msr-eval)."""
        return self.eval / SCORED_METRICS

    @property
    def csv_metrics(self) -> Path:
        """Return `csv/metrics.csv` (logger=csv)."""
        return self.path("csv") / CSV_METRICS


@dataclass(frozen=True)
class TrunkCacheLayout:
    """The paths of the head-only protocol's trunk cache `root` (nothing is created)."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root).expanduser())

    def folder(self, key: str) -> Path:
        """Return the folder of the trunk `key`."""
        return self.root / key

    def run(self, key: str) -> RunLayout:
        """Return the layout of the trunk's own msr-train run folder (`<key>/run`)."""
        return RunLayout(self.folder(key) / "run")

    def record(self, key: str) -> Path:
        """Return `<key>/trunk.json`, written once the trunk is trained (its key, checkpoint and code)."""
        return self.folder(key) / "trunk.json"

    def lock(self, key: str) -> Path:
        """Return `<key>.lock`: held while a job trains the trunk."""
        return self.root / f"{key}.lock"


def trunk_record_of(run_folder: str | os.PathLike) -> Path:
    """Return where the trunk record of a trunk's own run folder lies (`<key>/trunk.json` beside `run/`)."""
    return Path(run_folder).parent / "trunk.json"


def existing_checkpoint(path: str | os.PathLike) -> Path:
    """Return `path` when it is a file; raise FileNotFoundError naming it and the checkpoints beside it.

    Light (no torch): msr-eval and msr-predict check their checkpoint before loading Lightning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}{other_checkpoints(path)}")
    return path


def other_checkpoints(path: Path) -> str:
    """Return '; <folder> holds a.ckpt, b.ckpt' naming the checkpoints beside the missing `path` (or why
    there are none), for the message of a checkpoint not found."""
    folder = path.parent
    if not folder.is_dir():
        return f" (no folder {folder})"
    found = sorted(p.name for p in folder.glob("*.ckpt"))
    if not found:
        return f"; {folder} holds no checkpoint"
    hint = " (best.ckpt is written at the first evaluation)" if path.name == "best.ckpt" else ""
    return f"; {folder} holds {', '.join(found)}{hint}"


def run_dir() -> Path:
    """Return the folder of the current job (Hydra's output dir; the current folder outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path.cwd()


def run_path_resolver(name: str) -> str:
    """Return the named path (RUN_PATHS) inside the current Hydra job's output folder.

    The `msr.run` resolver of the configs: `dirpath: ${msr.run:checkpoints}`.
    """
    from hydra.core.hydra_config import HydraConfig

    return str(RunLayout(HydraConfig.get().runtime.output_dir).path(name))


def register_resolvers() -> None:
    """Register the `msr.run` config resolver (once; later calls do nothing)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("msr.run"):
        OmegaConf.register_new_resolver("msr.run", run_path_resolver)
