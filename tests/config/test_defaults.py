"""One source for each default: what a config group gives one of msr's callables agrees with that callable's
Python default, or the Python side has no default to disagree with.

Every choice of every group under msr/conf is composed through msr-train's config. The recipes
(experiment/, study/, hparams_search/) change values on purpose and are not defaults, so they are left out.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from msr.cli.common import CONFIG_DIR
from msr.data.synthetic import synthetic_params

#: Groups whose choices are recipes: they override defaults by design.
RECIPES = {"experiment", "study", "hparams_search", "hydra"}
#: Keys whose value is what a group's choices choose between (which ResNet, its norm layers, the detector's
#: layout), where the Python builder keeps the default of the torchvision builder it wraps for direct callers.
CHOSEN = {
    "msr.models.build_resnet_fpn_backbone": {"name", "norm", "fpn_norm"},
    "msr.models.build_detector": {"layout"},
}
_NO_DEFAULT = inspect.Parameter.empty


def group_choices() -> list[tuple[str, str]]:
    """Return every (group, choice) under msr/conf but the recipes and the shared `_*.yaml` parts."""
    conf = Path(CONFIG_DIR)
    return [
        (group.name, path.stem)
        for group in sorted(p for p in conf.iterdir() if p.is_dir() and p.name not in RECIPES)
        for path in sorted(group.glob("*.yaml"))
        if not path.stem.startswith("_")
    ]


def targets(node: Any, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Yield (path, node) for every node of `node` with a `_target_` in msr."""
    if isinstance(node, DictConfig):
        target = node._get_node("_target_") if "_target_" in node else None
        if target is not None and str(target._value()).startswith("msr."):
            yield path, node
        for key in node:
            yield from targets(node._get_node(key), f"{path}.{key}".lstrip("."))
    elif isinstance(node, ListConfig):
        for index in range(len(node)):
            yield from targets(node._get_node(index), f"{path}[{index}]")


def literal(node: DictConfig, key: str) -> tuple[bool, Any]:
    """Return (whether `key` holds a value of its own, that value as plain Python): an interpolation hands
    over another key's value, `???` sets none, and a node with a `_target_` is a callable of its own."""
    value = node._get_node(key)
    if isinstance(value, DictConfig) and "_target_" in value:
        return False, None
    if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
        return False, None
    if isinstance(value, (DictConfig, ListConfig)):
        return True, OmegaConf.to_container(value, resolve=False)
    return True, value._value()


def python_default(target: str, key: str) -> tuple[str, Any]:
    """Return (where `key` is declared, its Python default or `_NO_DEFAULT`) for the callable `target`.

    A class passes keyword arguments it does not name on to its bases (`**kwargs`); the search follows them.
    Where is 'msr' for msr's code, 'elsewhere' for a base outside msr (Lightning's defaults are not ours) and
    '' when nothing takes the key.
    """
    obj = get_object(target)
    functions = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    for function in functions:
        parameters = inspect.signature(function).parameters
        if key in parameters:
            where = "msr" if function.__module__.startswith("msr.") else "elsewhere"
            default = parameters[key].default
            return where, list(default) if isinstance(default, tuple) else default
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return "", _NO_DEFAULT
    return "", _NO_DEFAULT


def findings(group: str, choice: str) -> list[tuple[str, str, str, str]]:
    """Return (kind, target, key, what) for each key that `group=choice` gives one of msr's callables and
    that callable's Python default does not match: kind 'disagree' (a YAML value against a Python default),
    'chosen' (the same on a CHOSEN key) or 'unknown' (no parameter takes the key)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose("train", overrides=[f"{group}={choice}"])
    found = []
    for path, node in targets(config):
        target = str(node._get_node("_target_")._value())
        for key in map(str, node.keys()):
            own, value = literal(node, key)
            if key.startswith("_") or not own:
                continue
            where, default = python_default(target, key)
            what = f"{group}={choice}: {path}.{key} ({target})"
            if not where:
                found.append(("unknown", target, key, what))
            elif where == "msr" and default is not _NO_DEFAULT and default != value:
                kind = "chosen" if key in CHOSEN.get(target, ()) else "disagree"
                found.append((kind, target, key, f"{what}: YAML {value!r}, Python {default!r}"))
    return found


@pytest.fixture(scope="module")
def found() -> list[tuple[str, str, str, str]]:
    """Return the findings of every group choice."""
    return [finding for group, choice in group_choices() for finding in findings(group, choice)]


def test_every_group_choice_agrees_with_the_python_defaults(found):
    assert len(group_choices()) > 40
    disagree = sorted({what for kind, _, _, what in found if kind == "disagree"})
    assert not disagree, "one default in two places, with two values:\n" + "\n".join(disagree)


def test_every_key_a_group_sets_is_an_argument_of_its_callable(found):
    unknown = sorted({what for kind, _, _, what in found if kind == "unknown"})
    assert not unknown, "no parameter takes:\n" + "\n".join(unknown)


def test_the_chosen_keys_are_still_chosen(found):
    chosen = {(target, key) for kind, target, key, _ in found if kind == "chosen"}
    listed = {(target, key) for target, keys in CHOSEN.items() for key in keys}
    assert chosen == listed, f"CHOSEN keys that no choice sets apart from their default: {listed - chosen}"


def test_a_python_default_that_differs_from_the_yaml_is_found(monkeypatch):
    from msr.data.datamodules import CocoDataModule

    def disagreements() -> list[str]:
        return [key for kind, _, key, _ in findings("data", "custom") if kind == "disagree"]

    assert disagreements() == []
    monkeypatch.setitem(CocoDataModule.__init__.__kwdefaults__, "hflip_prob", 0.9)  # _loader.yaml: 0.5
    assert disagreements() == ["hflip_prob"]


def test_the_loader_settings_have_one_source():
    for key in ("batch_size", "eval_batch_size", "num_workers", "pin_memory", "persistent_workers"):
        assert python_default("msr.data.datamodules.CocoDataModule", key) == ("msr", _NO_DEFAULT), key


def test_msr_train_generates_the_set_that_synthetic_params_describes():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose("train", overrides=["data=synthetic"])
    data = instantiate(config.data, _convert_="all")  # nothing is generated until prepare_data
    assert data.synthetic_params == synthetic_params()
    assert synthetic_params()["max_objects"] == 4 and synthetic_params()["min_object_size"] == 0.25


@pytest.mark.parametrize("setting", ["upper_bound: true", "figures: null"])
def test_a_recipe_setting_is_written_once(setting):
    files = [p for p in Path(CONFIG_DIR).rglob("*.yaml") if setting in p.read_text()]
    assert len(files) == 1, f"{setting!r} in {[str(p) for p in files]}"
