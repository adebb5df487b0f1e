"""msr's Hydra launcher: runs a sweep's jobs in this process, the head-only jobs that share a trunk in one
pass (see msr.studies.sweep). Chosen by msr-train's config (`hydra/launcher: msr`)."""
