"""The launcher class Hydra instantiates for `hydra/launcher=msr` (Hydra finds plugins in hydra_plugins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.plugins.launcher import Launcher


class MsrLauncher(Launcher):
    """Hydra's basic launcher, except that head-only jobs sharing a trunk train in one pass.

    Kept light to import: Hydra imports every plugin at start-up; msr.studies.sweep loads on launch.
    """

    def __init__(self, **params: Any) -> None:
        self.config: Any = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        """Keep what launching needs."""
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        """Run the jobs of `job_overrides` (numbered from `initial_job_idx`); return their JobReturns."""
        from msr.studies.sweep import launch_sweep

        return launch_sweep(
            self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx
        )


def _submitit_launcher(base: type) -> type:
    """Return a subclass of a hydra-submitit launcher class whose head-only jobs sharing a trunk are one
    cluster job: one pass, run by every task of that job (its DDP world)."""

    class Grouped(base):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            """Submit one cluster job per unit of the sweep; return every job's JobReturn in order."""
            from msr.studies.sweep import in_job_order, units_for_submitit

            units, sizes = units_for_submitit(self.hydra_context, self.config, job_overrides, initial_job_idx)
            return in_job_order(super().launch(units, initial_job_idx), sizes)

        def __call__(
            self,
            sweep_overrides: list[str],
            job_dir_key: str,
            job_num: int,
            job_id: str,
            singleton_state: Any,
        ) -> Any:
            """Run a unit in the cluster job: a pass of several jobs, or one job as submitit does."""
            from hydra.core.singleton import Singleton

            from msr.studies.sweep import run_submitit_unit

            Singleton.set_state(singleton_state)
            returns = run_submitit_unit(self.hydra_context, self.task_function, self.config, sweep_overrides)
            if returns is None:
                return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
            return returns

    Grouped.__name__ = Grouped.__qualname__ = f"Msr{base.__name__}"
    return Grouped


try:  # hydra-submitit-launcher is optional (pip install "msr[cluster]")
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:  # pragma: no cover - without it, hydra/launcher=slurm is not available either
    pass
else:
    MsrSlurmLauncher = _submitit_launcher(SlurmLauncher)
    MsrLocalLauncher = _submitit_launcher(LocalLauncher)
