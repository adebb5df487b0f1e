"""Light start-up: the I/O, data-format, evaluation and CLI modules of msr-convert and msr-aggregate do
not import Lightning, Hydra or W&B (and the command lines not even torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "wandb")


def imported_after(module: str) -> set[str]:
    """Return the top-level packages loaded by importing `module` in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "msr.errors",
        "msr.files",
        "msr.distributed",
        "msr.data.coco_json",
        "msr.data.segmentation",
        "msr.evaluation.scoring",
        "msr.evaluation.evaluator",
        "msr.evaluation.tables",
        "msr.cli.convert",
        "msr.cli.aggregate",
    ],
)
def test_no_lightning_hydra_or_wandb(module: str) -> None:
    assert not imported_after(module) & set(HEAVY)


@pytest.mark.parametrize("module", ["msr.errors", "msr.files", "msr.cli.convert", "msr.cli.aggregate"])
def test_command_lines_do_not_import_torch(module: str) -> None:
    assert "torch" not in imported_after(module)


def test_scoring_a_results_file_does_not_import_torch() -> None:
    """msr-eval's scoring mode: the scoring, the rank helper it asks and the CLI module stay torch-free."""
    code = (
        "import sys, msr.cli.evaluate, msr.evaluation.scoring, msr.distributed as d; "
        "assert d.get_rank() == 0 and d.get_world_size() == 1 and not d.is_distributed(); "
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("program", "arguments"),
    [("msr.cli.evaluate", []), ("msr.cli.predict", ["images=."])],
)
def test_a_missing_checkpoint_is_named_before_lightning_or_torch_load(tmp_path, program, arguments) -> None:
    missing = tmp_path / "run" / "checkpoints" / "best.ckpt"
    missing.parent.mkdir(parents=True)
    (missing.parent / "last.ckpt").write_bytes(b"")
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('LOADED', 'lightning' in sys.modules, 'torch' in sys.modules))\n"
        f"sys.argv = ['x', 'ckpt_path={missing}', 'hydra.run.dir={tmp_path / 'out'}', *{arguments!r}]\n"
        f"from {program} import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"checkpoint not found: {missing}; {missing.parent} holds last.ckpt" in proc.stderr
    assert proc.stdout.splitlines()[-1] == "LOADED False False"
