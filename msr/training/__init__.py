"""The Lightning glue of msr: the LightningModule, its callbacks, optimizers and schedules, experiment
tracking and checkpoint loading. Import from the submodules."""
