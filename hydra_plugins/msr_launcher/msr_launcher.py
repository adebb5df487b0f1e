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
