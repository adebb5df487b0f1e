"""msr.compat's helpers on hand-made inputs: the fit-loop state of checkpoints with parts missing, loggers and
job returns without the private attribute, and Hydra's instantiation error texts of every shape."""

from __future__ import annotations

import copy
from types import SimpleNamespace

from msr import compat

BATCH_COUNTERS = ("ready", "started", "processed", "completed")


def epoch_end_state(with_optimizer: bool = True) -> dict:
    """Return a fit-loop state as Lightning saves it at the end of the second epoch (2 batches each)."""
    state = {
        compat.EPOCH_PROGRESS: {
            "total": {"ready": 2, "started": 2, "processed": 2, "completed": 1},
            "current": {"ready": 2, "started": 2, "processed": 2, "completed": 1},
        },
        compat.BATCH_PROGRESS: {
            "total": {"ready": 4, "started": 4, "processed": 4, "completed": 4},
            "current": {"ready": 2, "started": 2, "processed": 2, "completed": 2},
            "is_last_batch": True,
        },
        compat.EPOCH_LOOP_STATE: {compat.LOGGING_STEP: 4},
    }
    if with_optimizer:
        state[compat.OPTIMIZER_PROGRESS] = {
            "optimizer": {
                "step": {"total": {"ready": 4, "completed": 4}, "current": {"ready": 2, "completed": 2}}
            }
        }
    return state


def test_an_epoch_end_state_becomes_the_next_epochs_start():
    state = epoch_end_state()
    assert compat.saved_at_epoch_end(state)
    compat.as_next_epoch_start(state)
    assert state[compat.EPOCH_PROGRESS]["total"]["completed"] == 2
    assert state[compat.EPOCH_PROGRESS]["current"]["completed"] == 2
    assert state[compat.BATCH_PROGRESS]["current"] == dict.fromkeys(BATCH_COUNTERS, 0)
    assert state[compat.BATCH_PROGRESS]["is_last_batch"] is False
    assert state[compat.BATCH_PROGRESS]["total"]["completed"] == 4  # totals kept
    step = state[compat.OPTIMIZER_PROGRESS]["optimizer"]["step"]
    assert step["current"] == {"ready": 0, "completed": 0} and step["total"] == {"ready": 4, "completed": 4}
    assert not compat.saved_at_epoch_end(state)


def test_a_state_without_optimizer_progress_is_rewritten_all_the_same():
    without_optimizer = {**epoch_end_state(), compat.OPTIMIZER_PROGRESS: {}}
    for state in (epoch_end_state(with_optimizer=False), without_optimizer):
        expected = copy.deepcopy(state)
        compat.as_next_epoch_start(state)
        expected[compat.EPOCH_PROGRESS]["total"]["completed"] = 2
        expected[compat.EPOCH_PROGRESS]["current"]["completed"] = 2
        expected[compat.BATCH_PROGRESS]["current"] = dict.fromkeys(BATCH_COUNTERS, 0)
        expected[compat.BATCH_PROGRESS]["is_last_batch"] = False
        assert state == expected


def test_epoch_end_needs_a_started_epoch_and_the_batch_progress():
    state = epoch_end_state()
    del state[compat.EPOCH_PROGRESS]["total"]["started"]  # no epoch started: not an epoch end
    assert not compat.saved_at_epoch_end(state)
    state[compat.EPOCH_PROGRESS]["total"] = {"ready": 1, "processed": 1, "completed": 0}  # as if one started
    assert not compat.saved_at_epoch_end(state)
    state[compat.EPOCH_PROGRESS]["total"]["started"] = 1
    assert compat.saved_at_epoch_end(state)
    state = epoch_end_state()
    del state[compat.BATCH_PROGRESS]
    assert not compat.saved_at_epoch_end(state)
    assert not compat.saved_at_epoch_end({})


def test_the_logging_step_of_a_state_with_and_without_one():
    assert compat.saved_logging_step(epoch_end_state()) == 4
    assert compat.saved_logging_step({compat.EPOCH_LOOP_STATE: {compat.LOGGING_STEP: 7.0}}) == 7
    assert compat.saved_logging_step({compat.EPOCH_LOOP_STATE: {}}) is None
    assert compat.saved_logging_step({}) is None


def test_fit_loop_state_is_none_unless_the_checkpoint_holds_a_mapping():
    state = epoch_end_state()
    assert compat.fit_loop_state({"loops": {"fit_loop": state}}) is state
    assert compat.fit_loop_state({"loops": {"fit_loop": [1, 2]}}) is None
    assert compat.fit_loop_state({"loops": {}}) is None
    assert compat.fit_loop_state({}) is None


def test_a_loggers_experiment_is_read_and_set_without_making_one():
    logger = SimpleNamespace()
    assert compat.cached_experiment(logger) is None  # none made yet, and none made by asking
    experiment = object()
    compat.set_cached_experiment(logger, experiment)
    assert compat.cached_experiment(logger) is experiment
    compat.set_cached_experiment(logger, None)
    assert compat.cached_experiment(logger) is None


def test_job_error_of_returns_with_and_without_an_exception():
    error = ValueError("bad")
    assert compat.job_error(SimpleNamespace(_return_value=error)) is error
    assert compat.job_error(SimpleNamespace(_return_value=3)) is None
    assert compat.job_error(SimpleNamespace()) is None


def test_instantiation_error_texts_of_every_shape():
    hint = ", set env var HYDRA_FULL_ERROR=1 for a complete stack trace."
    text = f"Error locating target 'my.Head'{hint}\nfull_key: model.maskiou_head"
    expected = ("model.maskiou_head", "Error locating target 'my.Head'", True)
    assert compat.instantiation_error(ValueError(text)) == expected
    # the key is everything after the first colon, stripped; no space after the colon is needed
    assert compat.instantiation_error(ValueError("bad value\nfull_key:head.fc_dim"))[0] == "head.fc_dim"
    assert compat.instantiation_error(ValueError("bad value\nfull_key: a.b: c"))[0] == "a.b: c"
    assert compat.instantiation_error(ValueError("Error in call to target 'x'")) == (
        "",
        "Error in call to target 'x'",
        False,
    )
    assert compat.instantiation_error(KeyError()) == ("", "KeyError", False)  # an empty text: the class
