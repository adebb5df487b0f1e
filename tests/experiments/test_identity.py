"""Run identity: every key of msr-train's configs has a role, and the keys built from them pair exactly the
jobs that share a trunk or a pass."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from msr.cli.common import CONFIG_DIR
from msr.errors import ConfigError
from msr.models import build_detector
from msr.studies import identity
from msr.studies.identity import Role

#: msr-eval's and msr-predict's own choices in msr-train's groups.
OTHER_PROGRAMS = {"data": ("folder", "checkpoint")}
#: One composition per choice of every group that shapes what trains (the other groups are RUN nodes).
CHOICES = {
    group: sorted(
        p.stem
        for p in (Path(CONFIG_DIR) / group).glob("*.yaml")
        if not p.stem.startswith("_") and p.stem not in OTHER_PROGRAMS.get(group, ())
    )
    for group in (
        "data",
        "backbone",
        "head",
        "maskiou_target",
        "maskiou_loss",
        "protocol",
        "optimizer",
        "schedule",
        "trainer",
        "experiment",
    )
}


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="module")
def composed() -> list:
    """Return the resolved configs of every choice of every group (without the nodes that name and record
    a job, which are RUN whatever they hold: identity.RECORD_NODES)."""
    configs = []
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for group, choices in CHOICES.items():
            for choice in choices:
                configs.append(identity.resolved(compose("train", overrides=[f"{group}={choice}"])))
    return configs


def test_every_key_of_every_config_has_a_role(composed):
    keys = {key for config in composed for key, _ in identity.leaves(config)}
    assert len(keys) > 100
    roles = {key: identity.role(key, strict=True) for key in keys}  # raises for a key without a role
    assert roles["model.maskiou_head._target_"] is Role.HEAD and roles["model.box_head_dim"] is Role.TRUNK
    assert roles["seed"] is Role.TRUNK and roles["protocol.head_max_epochs"] is Role.PASS
    assert roles["data.num_workers"] is Role.PASS and roles["data.batch_size"] is Role.TRUNK


def test_a_new_model_key_must_say_whether_it_shapes_the_trunk_or_the_head():
    with pytest.raises(ConfigError, match=r"model\.fancy_option.*MODEL_TRUNK or MODEL_HEAD"):
        identity.role("model.fancy_option")
    with pytest.raises(ConfigError, match="PREFIX_ROLES"):
        identity.role("fancy_top_level_key", strict=True)
    assert identity.role("fancy_top_level_key") is Role.TRUNK  # a user's own key never pairs trunks wrongly


def test_every_argument_of_build_detector_is_classified():
    arguments = set(inspect.signature(build_detector).parameters)
    classified = set(identity.MODEL_TRUNK) | set(identity.MODEL_HEAD)
    assert arguments <= classified, sorted(arguments - classified)
    assert classified - arguments == {"_target_", "_convert_"}


def test_head_variants_share_a_trunk_and_a_pass_other_settings_do_not():
    base = ["experiment=quickstart", "protocol=head_only"]
    default = identity.resolved(compose_train(*base))
    multiply = identity.resolved(
        compose_train(*base, "head=maskiou_multiply", "maskiou_target=present_classes")
    )
    tau = identity.resolved(
        compose_train(*base, "model.maskiou_loss.threshold=0.5", "model.maskiou_detach=true")
    )
    seed = identity.resolved(compose_train(*base, "seed=1"))
    short = identity.resolved(compose_train(*base, "protocol.head_max_epochs=1"))
    assert identity.trunk_key(default) == identity.trunk_key(multiply) == identity.trunk_key(tau)
    assert identity.pass_key(default) == identity.pass_key(multiply) == identity.pass_key(tau)
    assert identity.trunk_key(seed) != identity.trunk_key(default)
    assert identity.trunk_key(short) == identity.trunk_key(default)  # the head's schedule is not the trunk's
    assert identity.pass_key(short) != identity.pass_key(default)
    assert identity.head_values(multiply) != identity.head_values(default)


def test_the_trunk_key_holds_the_code_a_trunk_depends_on(monkeypatch, tmp_path):
    config = identity.resolved(compose_train("experiment=quickstart"))
    before = identity.trunk_key(config)
    monkeypatch.setattr(identity, "code_fingerprint", lambda: "other code")
    assert identity.trunk_key(config) != before
    # docstrings and comments do not count; code does
    source = tmp_path / "a.py"
    source.write_text('"""Module doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # note\n')
    plain = identity._source_without_docs(source)
    source.write_text('"""Other doc."""\n\ndef f(x):\n    """Other."""\n    # a comment\n    return x + 1\n')
    assert identity._source_without_docs(source) == plain
    source.write_text("def f(x):\n    return x + 2\n")
    assert identity._source_without_docs(source) != plain


def test_a_given_trunk_file_is_its_own_key():
    config = identity.resolved(compose_train("experiment=quickstart"))
    other_seed = identity.resolved(compose_train("experiment=quickstart", "seed=3"))
    assert identity.trunk_key(config, weights_digest="ab").startswith("file-")
    assert identity.trunk_key(config, weights_digest="ab") == identity.trunk_key(
        other_seed, weights_digest="ab"
    )
    assert identity.trunk_key(config, weights_digest="ab") != identity.trunk_key(config, weights_digest="cd")


def test_trunk_overrides_keep_what_shapes_or_runs_the_trunk():
    overrides = [
        "experiment=quickstart",
        "head=maskiou_multiply",
        "model.maskiou_loss.threshold=0.5",
        "seed=2",
        "data.num_workers=0",
        "protocol=head_only",
        "protocol.head_max_epochs=1",
        "logger=wandb",
        "name=x",
        "study=input_designs",
        "hydra.sweep.dir=/s",
        "ckpt_path=auto",
        "callbacks.figures=null",
        "+trainer.max_time=00:00:01:00",
    ]
    assert identity.trunk_overrides(overrides) == [
        "experiment=quickstart",
        "seed=2",
        "data.num_workers=0",
        "callbacks.figures=null",
        "+trainer.max_time=00:00:01:00",
    ]


def test_variants_of_msr_aggregate_ignore_seeds_outputs_and_processes():
    for key in (
        "seed=1",
        "hydra.sweep.dir=/x",
        "logger=csv",
        "trainer.devices=2",
        "data.num_workers=0",
        "protocol.trunk_cache=/c",
        "protocol.shared_pass=false",
        "hydra/launcher=slurm",
    ):
        assert identity.variant_ignored(key), key
    for key in ("head=maskiou", "protocol.head_only", "protocol.trunk_weights=/w", "model.box_head_dim"):
        assert not identity.variant_ignored(key), key


def test_a_sweep_groups_the_head_only_jobs_that_share_a_trunk_and_says_when_end_to_end_jobs_cannot():
    from msr.studies.sweep import end_to_end_note, plan

    head_only = ["experiment=quickstart", "protocol=head_only"]
    jobs = [
        compose_train(*head_only, "head=maskiou", "seed=0"),
        compose_train(*head_only, "head=maskiou_multiply", "seed=0"),
        compose_train(*head_only, "head=maskiou", "seed=1"),
        compose_train("experiment=quickstart", "head=maskiou", "seed=0"),  # end to end: alone
        compose_train(*head_only, "head=maskiou_all_masks", "seed=1", "logger=csv", "name=other"),
        compose_train(*head_only, "head=maskiou_concat_28", "seed=0", "protocol.shared_pass=false"),
    ]
    assert plan(jobs) == [[0, 1], [2, 4], [3], [5]]  # a pass starts where its first job stands
    assert end_to_end_note(jobs) is None
    end_to_end = [
        compose_train("experiment=quickstart", f"head={h}") for h in ("maskiou", "maskiou_multiply")
    ]
    note = end_to_end_note(end_to_end)
    assert note.startswith("protocol=end_to_end: the 2 jobs that differ only in their MaskIoU head train one")
    assert "protocol=head_only would train their heads in one pass" in note
    baseline = [compose_train("experiment=quickstart", f"head={h}") for h in ("maskiou", "none")]
    assert end_to_end_note(baseline) is None  # Mask R-CNN has no head to share a pass
