"""msr as users install and extend it: a built wheel's commands find their configs from any folder, and
a user's own config folder and classes, kept outside msr, compose with msr's groups."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from support.cli import TINY
from support.paths import ROOT

#: What a wheel is built from (a copy, so that building leaves no build/ or egg-info in the checkout).
WHEEL_SOURCES = ("msr", "hydra_plugins", "pyproject.toml", "README.md")


def build_wheel(into: Path) -> Path:
    """Return the wheel of msr built from a copy of this checkout's sources in `into`."""
    source = into / "source"
    for name in WHEEL_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    wheels = into / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("msr-*.whl")
    return wheel


def fresh_environment(path: Path) -> Path:
    """Create a virtual environment at `path` that sees this one's installed packages (but not its msr,
    an editable install whose finder only this environment's site start-up runs); return its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    Path(purelib, "installed_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    """Return the bin/ folder of a fresh environment with msr installed from its wheel, no dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    python = fresh_environment(root / "env")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
    subprocess.run([*install, str(build_wheel(root))], check=True, capture_output=True, timeout=300)
    return python.parent


def test_the_wheel_holds_the_configs_and_its_commands_train_from_any_folder(wheel_env, tmp_path, cli_env):
    where = subprocess.run(
        [
            str(wheel_env / "python"),
            "-c",
            "import msr.cli.common as c; print(c.__file__); print(c.CONFIG_DIR)",
        ],
        cwd=tmp_path,
        env=cli_env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(not Path(p).is_relative_to(ROOT) for p in where), where  # the installed copy, not this one
    assert (Path(where[1]) / "experiment" / "quickstart.yaml").is_file()

    job = subprocess.run(
        [str(wheel_env / "msr-train"), "--cfg", "job", "experiment=quickstart"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert "name: quickstart" in job.stdout

    run = tmp_path / "run"
    trained = subprocess.run(
        [str(wheel_env / "msr-train"), *TINY, "schedule=cpu_tiny", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run / "eval" / "val_metrics.json").read_text())
    assert 0.0 <= metrics["segm/AP"] <= 1.0
    assert (run / "checkpoints" / "last.ckpt").is_file()


#: A user's project beside msr: a head class of their own package and configs that use it.
USER_HEAD = '''
from msr.models.maskiou import MaskIoUHead


class CornerMaskIoUHead(MaskIoUHead):
    """A toy design: the target-class mask and the RoI feature's channel mean (2 input channels)."""

    def input_channels(self, in_channels, num_classes):
        return 2

    def build_input(self, roi_features, mask_probs, labels):
        import torch

        mask = self.target_masks(mask_probs, labels)
        return torch.cat([mask, roi_features.mean(dim=1, keepdim=True)], dim=1)
'''
USER_HEAD_YAML = """
# @package model
defaults:
  - maskiou
  - _self_

maskiou_head:
  _target_: my_heads.CornerMaskIoUHead
"""
USER_EXPERIMENT_YAML = """
# @package _global_
defaults:
  - /experiment/quickstart
  - override /head: corner
  - _self_

name: mine
"""


def write_user_project(root: Path) -> Path:
    """Write a user's project (my_heads.py, conf/head/corner.yaml, conf/experiment/mine.yaml) under
    `root`; return its conf folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "my_heads.py").write_text(textwrap.dedent(USER_HEAD))
    conf = root / "conf"
    (conf / "head").mkdir(parents=True)
    (conf / "experiment").mkdir()
    (conf / "head" / "corner.yaml").write_text(USER_HEAD_YAML.lstrip())
    (conf / "experiment" / "mine.yaml").write_text(USER_EXPERIMENT_YAML.lstrip())
    return conf


def test_a_users_configs_and_head_class_outside_msr_compose_with_msrs_groups(tmp_path, cli_env):
    project = tmp_path / "my_project"
    conf = write_user_project(project)
    env = {**cli_env, "PYTHONPATH": str(project)}
    run = tmp_path / "run"
    tiny = [o for o in TINY if not o.startswith("experiment=")]
    argv = ["--config-dir", str(conf), "experiment=mine", *tiny, "schedule=cpu_tiny", f"hydra.run.dir={run}"]
    proc = subprocess.run(
        [sys.executable, "-m", "msr.cli.train", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "run_config.json").read_text())["config"]
    assert config["name"] == "mine"
    assert config["model"]["maskiou_head"]["_target_"] == "my_heads.CornerMaskIoUHead"
    assert config["model"]["maskiou_head"]["num_convs"] == 4  # msr's head/maskiou.yaml, composed beneath
    assert config["data"]["num_train"] == 8  # the quickstart recipe of msr, with the overrides
    metrics = json.loads((run / "eval" / "val_metrics.json").read_text())
    assert 0.0 <= metrics["segm/AP"] <= 1.0  # the user's head trained and was evaluated

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "msr.cli.train",
            "--config-dir",
            str(conf),
            "head=corner_typo",
            "--cfg",
            "job",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "head=corner_typo" in missing.stderr
    assert "did you mean head=corner?" in missing.stderr  # the user's own choice is offered beside msr's
    assert "choices of head: corner, maskiou," in missing.stderr
