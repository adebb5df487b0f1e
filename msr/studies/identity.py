"""Run identity: which resolved config keys define a trunk, a head variant, a shared pass or nothing learned.

Every leaf key of msr-train's resolved config has one role:

- TRUNK: shapes the Mask R-CNN trunk of the head-only protocol (its model, data, optimizer, schedule,
  trainer, init and seed) and so the boxes and masks every head variant of it scores;
- HEAD: shapes a MaskIoU head variant (its design, training target, loss, gradient stop); jobs that differ
  only in HEAD keys (and RUN keys) train in one pass on a shared trunk;
- PASS: how the head stage trains, the same for every job of a pass (the protocol, the head's schedule,
  the loader's processes, resuming);
- RUN: how a job is named, logged and recorded (name, logger, callbacks, evaluation, Hydra), which may
  differ between the jobs of a pass.

`role(key)` answers for every key and raises for a key nobody has classified: a new model key must be
added to MODEL_TRUNK or MODEL_HEAD (a test composes the configs and checks every key). The trunk key
hashes the TRUNK values and a fingerprint of the code a trained trunk depends on (`code_fingerprint`), so
a change to the model, the data pipeline or the training step trains new trunks instead of reusing stale
ones. `variant_ignored(key)` says which keys do not tell msr-aggregate's variants apart (the seed, where
outputs go, how many processes ran).
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from msr.errors import ConfigError


class Role(str, Enum):
    """What a config key shapes (see the module docstring)."""

    TRUNK = "trunk"
    HEAD = "head"
    PASS = "pass"
    RUN = "run"


#: build_detector's arguments that shape the MaskIoU branch: the keys a head variant may change.
MODEL_HEAD = ("maskiou_head", "maskiou_target", "maskiou_loss", "maskiou_detach")
#: build_detector's arguments that shape the trunk (every other argument, and the node's own keys).
MODEL_TRUNK = (
    "_target_",
    "_convert_",
    "num_classes",
    "layout",
    "backbone",
    "box_head_dim",
    "mask_head_channels",
    "mask_head_convs",
    "anchor_sizes",
    "aspect_ratios",
    "min_size",
    "max_size",
    "rpn_batch_size_per_image",
    "rpn_pre_nms_top_n_train",
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_train",
    "rpn_post_nms_top_n_test",
    "box_batch_size_per_image",
    "box_positive_fraction",
    "box_score_thresh",
    "box_nms_thresh",
    "box_detections_per_img",
    "roi_align",
)
#: Roles of the other keys, by prefix; the longest matching prefix wins ("x" matches "x" and "x.*").
PREFIX_ROLES: dict[str, Role] = {
    "seed": Role.TRUNK,
    "data": Role.TRUNK,
    "data.num_workers": Role.PASS,
    "data.pin_memory": Role.PASS,
    "data.persistent_workers": Role.PASS,
    "data.cache_dir": Role.PASS,
    "optimizer": Role.TRUNK,
    "schedule": Role.TRUNK,
    "module": Role.TRUNK,
    "module._target_": Role.PASS,
    "module.eval_frozen_norms": Role.PASS,
    "trainer": Role.TRUNK,
    "trainer._target_": Role.PASS,
    "trainer.log_every_n_steps": Role.PASS,
    "trainer.enable_progress_bar": Role.PASS,
    "trainer.num_sanity_val_steps": Role.PASS,
    "trainer.plugins": Role.PASS,
    "trainer.max_time": Role.PASS,
    "init": Role.TRUNK,
    "init.freeze_except_maskiou": Role.PASS,
    "protocol": Role.PASS,
    "protocol.trunk_weights": Role.TRUNK,
    "protocol.trunk_classes": Role.TRUNK,
    "ckpt_path": Role.PASS,
    "overwrite": Role.RUN,
    "final_eval": Role.PASS,
    "name": Role.RUN,
    "optimized_metric": Role.RUN,
    "logger": Role.RUN,
    "callbacks": Role.RUN,
    "evaluation": Role.RUN,
    "hydra": Role.RUN,
}
#: Roles of msr-train's config groups, for overrides that choose one (`head=maskiou_multiply`).
GROUP_ROLES: dict[str, Role] = {
    "head": Role.HEAD,
    "maskiou_target": Role.HEAD,
    "maskiou_loss": Role.HEAD,
    "backbone": Role.TRUNK,
    "data": Role.TRUNK,
    "optimizer": Role.TRUNK,
    "schedule": Role.TRUNK,
    "trainer": Role.TRUNK,
    "experiment": Role.TRUNK,
    "protocol": Role.PASS,
    "evaluation": Role.RUN,
    "callbacks": Role.RUN,
    "logger": Role.RUN,
    "study": Role.RUN,
    "hparams_search": Role.RUN,
}
#: Keys that do not tell msr-aggregate's variants apart: seeds of one variant differ in them.
VARIANT_IGNORED = (
    "seed",
    "hydra",
    "logger",
    "ckpt_path",
    "overwrite",
    "trainer.devices",
    "trainer.max_time",  # a wall-clock guard, not a design choice
    "data.num_workers",
    "data.cache_dir",
    "protocol.trunk_cache",
    "protocol.shared_pass",
    "protocol.trunk",  # the trunk record of runs written before the head stage (paired on it instead)
    "init.weights",  # set by those runs to their trunk
)
#: Source the trained trunk depends on (relative to the msr package): the model, the data pipeline and
#: the training step. Docstrings and comments do not count (see `code_fingerprint`).
TRUNK_CODE = ("models", "data", "training/module.py", "training/optim.py", "training/schedules.py")
#: Packages whose versions change a trained trunk's numbers.
TRUNK_PACKAGES = ("torch", "torchvision")


def _matches(key: str, prefix: str) -> bool:
    """Return True when `prefix` is `key` or a dotted parent of it."""
    return key == prefix or key.startswith(f"{prefix}.")


def role(key: str, strict: bool = False) -> Role:
    """Return the role of a dotted resolved-config key.

    A model key nobody has classified is a ConfigError (it would decide silently whether jobs share a
    trunk). Another unknown key (a user's own `+key=...`) counts as TRUNK, so that jobs differing in it
    never share a trunk, unless `strict` (the tests of msr's own configs), where it is an error too.
    """
    if _matches(key, "model"):
        part = key.split(".", 2)[1] if "." in key else ""
        if part in MODEL_HEAD:
            return Role.HEAD
        if part in MODEL_TRUNK:
            return Role.TRUNK
        raise ConfigError(
            f"config key {key}: msr.studies.identity does not say whether it shapes the trunk or the "
            f"MaskIoU head; add {part!r} to MODEL_TRUNK or MODEL_HEAD there"
        )
    found = [p for p in PREFIX_ROLES if _matches(key, p)]
    if not found and not strict:
        return Role.TRUNK
    if not found:
        raise ConfigError(
            f"config key {key}: msr.studies.identity gives it no role (trunk, head, pass or run); "
            f"add it to PREFIX_ROLES there"
        )
    return PREFIX_ROLES[max(found, key=len)]


def override_role(override: str) -> Role:
    """Return the role of a command-line override (`head=x`, `model.box_head_dim=64`, `+x=1`, `~x`)."""
    key = override.split("=", 1)[0].lstrip("+~")
    if key.startswith("hydra/") or key.startswith("hydra."):
        return Role.RUN
    if "/" in key:  # a nested group choice (`backbone/...`): its group's role
        key = key.split("/", 1)[0]
    if key in GROUP_ROLES:
        return GROUP_ROLES[key]
    return role(key)


def leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted key, value) of every leaf of a plain (resolved) config; lists are leaves."""
    if isinstance(config, Mapping):
        if not config and prefix:
            yield prefix.rstrip("."), {}
        for key, value in config.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), config


def values_of(config: Mapping[str, Any], roles: Sequence[Role]) -> dict[str, Any]:
    """Return {key: value} of the plain config's leaves whose role is one of `roles` (sorted by key)."""
    return {k: v for k, v in sorted(leaves(config)) if role(k) in roles}


#: Top-level config nodes that only say how a job is named, logged and recorded (RUN): left out before a
#: config is resolved for its keys, since they may point into the job's folder, which may not exist yet.
RECORD_NODES = ("hydra", "name", "logger", "callbacks", "evaluation", "optimized_metric")


def resolved(config: Any) -> dict[str, Any]:
    """Return a composed config (DictConfig) resolved as plain data, without RECORD_NODES."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(config, resolve=False)
    for node in RECORD_NODES:
        plain.pop(node, None)
    return OmegaConf.to_container(OmegaConf.create(plain), resolve=True, throw_on_missing=False)


def _digest(payload: Any) -> str:
    """Return a 16-hex-digit SHA-256 of a JSON-able payload."""
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _source_without_docs(path: Path) -> str:
    """Return the AST of a Python file without its docstrings (comments are not in an AST)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        if docstring and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Return a hash of the msr code a trained trunk depends on (TRUNK_CODE, docstrings and comments
    left out) and of the torch and torchvision versions."""
    package = Path(__file__).resolve().parents[1]
    files: list[Path] = []
    for entry in TRUNK_CODE:
        path = package / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    sources = {str(f.relative_to(package)): _source_without_docs(f) for f in files}
    versions = {}
    for name in TRUNK_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return _digest({"sources": sources, "versions": versions})


def trunk_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the TRUNK keys and values of a resolved job config (`model.num_classes` left out: the
    data decides it)."""
    return {k: v for k, v in values_of(config, [Role.TRUNK]).items() if k != "model.num_classes"}


def trunk_key(config: Mapping[str, Any], weights_digest: str | None = None) -> str:
    """Return the trunk key of a resolved job config.

    A trunk trained by msr: its TRUNK values and the code fingerprint. A trunk from a file (`weights_digest`,
    the file's hash): the file and the model keys that decide which boxes and masks it gives.
    """
    values = trunk_values(config)
    if weights_digest is not None:
        model = {k: v for k, v in values.items() if k.startswith(("model.", "protocol.trunk_classes"))}
        return "file-" + _digest({"weights": weights_digest, "model": model})
    return _digest({"trunk": values, "code": code_fingerprint()})


def pass_key(config: Mapping[str, Any]) -> str:
    """Return the key of the shared head pass a resolved head-only job can join: its TRUNK and PASS
    values (jobs with equal keys differ only in their heads and how they are recorded)."""
    return _digest(values_of(config, [Role.TRUNK, Role.PASS]))


def head_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the HEAD keys and values of a resolved job config (what makes it a variant of its trunk)."""
    return values_of(config, [Role.HEAD])


def trunk_overrides(overrides: Sequence[str]) -> list[str]:
    """Return the overrides of a job that its trunk keeps: those of TRUNK keys and groups, and of the PASS
    and RUN ones that say how to run rather than what a head-only job is (loader processes, logging
    interval, evaluation, callbacks)."""
    dropped_keys = (
        "protocol",
        "ckpt_path",
        "overwrite",
        "init.freeze_except_maskiou",
        "module.eval_frozen_norms",
        "name",
        "optimized_metric",
        "logger",
        "study",
        "hparams_search",
    )
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if override_role(override) is Role.HEAD or key.startswith(("hydra/", "hydra.")):
            continue
        if any(_matches(key.split("/", 1)[0], d) for d in dropped_keys):
            continue
        kept.append(override)
    return kept


def variant_ignored(key: str) -> bool:
    """Return True for an override or dotted config key that does not define an msr-aggregate variant."""
    key = key.split("=", 1)[0].lstrip("+~")
    return any(_matches(key, k) or key.startswith(f"{k}/") for k in VARIANT_IGNORED)
