"""`msr-train --help`, `msr-eval --help`, `msr-predict --help`: what the program does, the config groups
with the choices that program takes (no `_` files, no choice made for another program), three examples,
where the output goes and a pointer to the README. Built from msr/conf without composing anything or
importing Lightning, so it prints at once. Hydra's own page stays at `--hydra-help`."""

from __future__ import annotations

import textwrap

from msr.cli.typos import public_groups

#: Choices that belong to some programs only: (group, choice) -> those programs.
ONLY_FOR: dict[tuple[str, str], tuple[str, ...]] = {
    ("data", "checkpoint"): ("msr-eval", "msr-predict"),
    ("data", "folder"): ("msr-predict",),
    ("callbacks", "default"): ("msr-train",),
    ("callbacks", "evaluate"): ("msr-eval",),
    ("callbacks", "predict"): ("msr-predict",),
}

#: The groups each program composes (its config's defaults list and what overrides may choose).
GROUPS: dict[str, tuple[str, ...]] = {
    "msr-train": (
        "experiment", "data", "backbone", "head", "maskiou_target", "maskiou_loss", "protocol", "optimizer",
        "schedule", "trainer", "evaluation", "callbacks", "logger", "study", "hparams_search",
    ),
    "msr-eval": ("data", "trainer", "evaluation", "callbacks"),
    "msr-predict": ("data", "trainer", "callbacks"),
}

ABOUT: dict[str, str] = {
    "msr-train": (
        "Train Mask Scoring R-CNN (or Mask R-CNN with head=none) and evaluate it on the val split: COCO "
        "bbox/segm AP and how well the mask scores track the true mask IoU. Every choice below is a config "
        "group of msr/conf; any key is set with key=value (msr-train --cfg job prints them all)."
    ),
    "msr-eval": (
        "Evaluate a checkpoint written by msr-train on the data it was trained on (or data=<choice>), or "
        "score an existing COCO results JSON against its annotation file: COCO bbox/segm AP, the MaskIoU "
        "calibration and, with evaluation.upper_bound=true, the paper's upper bound."
    ),
    "msr-predict": (
        "Run a checkpoint written by msr-train on a folder of pictures (searched recursively): COCO results "
        "JSON files (mask score, class score, predicted IoU) and overlay pictures of the detections."
    ),
}

EXAMPLES: dict[str, tuple[str, ...]] = {
    "msr-train": (
        "msr-train experiment=quickstart                      # the quickstart on the synthetic set (CPU)",
        "msr-train experiment=quickstart head=none seed=1     # the Mask R-CNN baseline",
        "msr-train experiment=balloon_cpu_study data.root=/path/to/balloon",
    ),
    "msr-eval": (
        "msr-eval ckpt_path=outputs/quickstart/<run>/checkpoints/best.ckpt",
        "msr-eval ckpt_path=best.ckpt data=coco data.root=/datasets/coco evaluation.upper_bound=true",
        "msr-eval results=segm_results.json ann_file=instances_val2017.json",
    ),
    "msr-predict": (
        "msr-predict ckpt_path=outputs/quickstart/<run>/checkpoints/best.ckpt images=/path/to/pictures",
        "msr-predict ckpt_path=best.ckpt images=pictures/ score_thresh=0.3",
        "msr-predict ckpt_path=best.ckpt images=pictures/ overlays=false hydra.run.dir=predictions",
    ),
}

OUTPUT: dict[str, str] = {
    "msr-train": (
        "outputs/<name>/<date>_<time>/ (or hydra.run.dir=<folder>): checkpoints/last.ckpt and best.ckpt, "
        "eval/val_metrics.json, figures/step_<N>/, csv/metrics.csv (logger=csv), train.log, run_config.json; "
        "the first line names the folder, the last line what it holds. Resume: ckpt_path=auto "
        "hydra.run.dir=<folder>."
    ),
    "msr-eval": (
        "outputs/eval/<date>_<time>/ (or hydra.run.dir=<folder>): eval/val_metrics.json and the results "
        "JSON files, figures/step_<N>/ (N: the checkpoint's training step), evaluate.log."
    ),
    "msr-predict": (
        "outputs/predict/<date>_<time>/ (or hydra.run.dir=<folder>): bbox_results.json, segm_results.json, "
        "images.json, overlays/<picture>.png, predict.log."
    ),
}


def choices_for(program: str) -> dict[str, list[str]]:
    """Return {group: its choices that `program` takes} for the groups of `program`."""
    groups = public_groups()
    return {
        group: [c for c in groups.get(group, []) if program in ONLY_FOR.get((group, c), (program,))]
        for group in GROUPS[program]
    }


def help_text(program: str) -> str:
    """Return the `--help` page of `program` (msr-train, msr-eval or msr-predict)."""
    width = 100
    about = textwrap.fill(f"{program}: {ABOUT[program]}", width, subsequent_indent="  ")
    lines = [about, "", "Config groups (group=choice):"]
    for group, choices in choices_for(program).items():
        text = ", ".join(choices)
        lines.append(textwrap.fill(f"{group}: {text}", width, initial_indent="  ", subsequent_indent="    "))
    lines += ["", "Examples:", *(f"  {example}" for example in EXAMPLES[program]), ""]
    lines.append(textwrap.fill(f"Output: {OUTPUT[program]}", width, subsequent_indent="  "))
    more = (
        "More: README.md (sections 'The programs' and 'Troubleshooting'); the config files: msr/conf/; "
        f"Hydra's options: {program} --hydra-help."
    )
    lines += ["", textwrap.fill(more, width, subsequent_indent="  ")]
    return "\n".join(lines)


def wants_help(argv: list[str]) -> bool:
    """Return True when the command line asks for msr's help page (`--help` or `-h`)."""
    return any(arg in ("--help", "-h") for arg in argv)
