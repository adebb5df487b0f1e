"""Every input of issue 15 that used to end in a traceback, a late crash or a silent "success" now stops the
entry point before any work with one line naming the file, key or value and what to do (exit status 2).
The cases and their files are in batch_cases.py; they run once, in one process (conftest.batch)."""

from __future__ import annotations

import json

import pytest


def error_line(result: dict, program: str = "msr-train") -> str:
    """Return the one error line of a case that must fail with exit status 2 and no traceback."""
    assert result["rc"] == 2, result["stderr"][-3000:]
    assert "Traceback" not in result["stderr"], result["stderr"][-3000:]
    lines = [line for line in result["stderr"].splitlines() if line.startswith(f"{program}: error: ")]
    assert len(lines) == 1, result["stderr"][-3000:]
    return lines[0]


def assert_says(line: str, *fragments: str) -> None:
    """Assert that `line` holds every fragment."""
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"


# -- annotation files: checked when the data set is built, before any training step ----------------------


def test_val_polygon_of_one_point_names_annotation_file_and_fix(batch):
    line = error_line(batch["val_polygon"])
    assert_says(
        line, "val.json: annotation 105 (image 5) has a polygon of 1 point;", "at least 3 (x, y) points"
    )
    assert_says(line, "COCOeval cannot score them", "fix those polygons or delete them")
    assert not (batch["val_polygon"]["root"] / "val_polygon" / "run" / "checkpoints").exists()


def test_nan_in_bbox(batch):
    line = error_line(batch["nan_bbox"])
    assert_says(line, "train.json: annotation 102 has a malformed 'bbox' [nan, 8.0, 32.0, 32.0]", "finite")


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("crowd_rle_size", "val.json: annotation 900 has RLE size [10, 10] but image 5 is 64x64"),
        ("crowd_rle_counts", "train.json: annotation 901 has uncompressed RLE counts covering 100 pixels"),
    ],
)
def test_crowd_rle_of_the_wrong_size(batch, case, fragment):
    assert_says(error_line(batch[case]), fragment, "fix or delete annotation")


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("no_annotations", ["train.json: no training picture with a usable instance"]),
        ("only_crowd", ["train.json: no training picture with a usable instance", "4 crowd regions"]),
        ("no_images", ["train.json: 'images' is empty; a data set needs at least one picture"]),
        ("no_categories", ["val.json: 'categories' is empty; a data set needs at least one category"]),
    ],
)
def test_empty_training_set_or_categories(batch, case, fragments):
    assert_says(error_line(batch[case]), *fragments)
    assert "val metrics after" not in batch[case]["stdout"]


def test_val_picture_of_another_size_is_found_before_training(batch):
    line = error_line(batch["val_size"])
    assert_says(
        line, "5.png is 64x48 (WxH) but", "val.json says 64x64 for image 5", "data.skip_unreadable=true"
    )


def test_phone_photo_whose_size_fits_only_the_upright_reading_names_the_option(batch):
    line = error_line(batch["exif_quarter_turn"])
    assert_says(
        line,
        "5.png is stored 48x64 (WxH) with EXIF orientation 6 (turned 90°);",
        "val.json says 64x48 for image 5, its upright size:",
        "set data.exif_orientation=apply (now ignore: read as stored)",
    )


# -- configuration values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("max_epochs_abc", "schedule.max_epochs must be a whole number >= -1, got 'abc'"),
        (
            "custom_without_paths",
            "missing values: data.train_ann, data.train_images, data.val_ann, data.val_images",
        ),
        ("unknown_optimizer", "config node optimizer: Error locating target 'torch.optim.Adamx'"),
        ("unknown_optimizer_choice", "unknown choice optimizer=adamx (did you mean optimizer=adamw?)"),
        ("unknown_key", "unknown key optim (did you mean optimizer?)"),
        ("misspelt_key", "unknown key schedule.max_step (did you mean schedule.max_steps?)"),
        ("misspelt_added_key", "unknown key schedule.max_step (did you mean schedule.max_steps?)"),
        ("misspelt_group", "unknown key haed (did you mean head=none?)"),
        (
            "added_existing_key",
            "data.batch_size is in the config already: set it without the '+' (data.batch_size=3), "
            "or use ++data.batch_size=3",
        ),
        (
            "bad_trainer_value",
            "config node trainer: `Timer(duration='xyz')` is not a valid duration. Expected a string in "
            "the format DD:HH:MM:SS.; check its values",
        ),
        ("bad_override_grammar", "no viable alternative at input '[1'; See https://hydra.cc/docs/"),
        ("batch_size_0", "data.batch_size must be a whole number >= 1, got 0"),
    ],
)
def test_bad_config_values(batch, case, fragment):
    assert_says(error_line(batch[case]), fragment)


def test_misspelt_keys_stop_before_the_run_folder_holds_anything(batch):
    for case in ("misspelt_key", "misspelt_added_key"):
        assert not (batch[case]["root"] / case / "run" / "checkpoints").exists()
    assert "sgd" not in error_line(batch["unknown_optimizer_choice"]).split("did you mean")[0]


def test_eval_open_data_node_takes_data_keys_and_refuses_misspelt_ones(batch):
    assert_says(error_line(batch["eval_open_data_node"], "msr-eval"), "split must be one of")
    line = error_line(batch["eval_misspelt_data_key"], "msr-eval")
    assert_says(line, "unknown key data.num_worker (did you mean data.num_workers?)")


def test_hydra_full_error_shows_the_traceback_of_a_user_error(batch):
    result = batch["full_error"]
    assert result["rc"] == 2 and "Traceback" in result["stderr"]
    assert "msr-train: error: schedule.max_epochs must be a whole number" in result["stderr"].splitlines()[-1]


def test_unexpected_error_ends_the_run_log_with_its_traceback(batch):
    result = batch["unexpected_error"]
    assert result["rc"] == 1 and "negative dimension" in result["stderr"]
    log = (batch["unexpected_error"]["root"] / "unexpected_error" / "run" / "train.log").read_text()
    tail = log[log.rindex("msr-train: stopped by an unexpected error") :]
    assert "Traceback" in tail and "negative dimension" in tail


def test_user_error_ends_the_run_log(batch):
    log = (batch["val_size"]["root"] / "val_size" / "run" / "train.log").read_text()
    assert log.rstrip("\n").splitlines()[-1].endswith(error_line(batch["val_size"]))


# -- checkpoints ----------------------------------------------------------------------------------------


def test_truncated_checkpoint(batch):
    line = error_line(batch["ckpt_truncated"])
    assert_says(
        line, "truncated.ckpt: not a checkpoint written by msr-train (the file is truncated or damaged"
    )


@pytest.mark.parametrize(("case", "program"), [("ckpt_text", "msr-train"), ("eval_ckpt_text", "msr-eval")])
def test_text_file_as_checkpoint_gives_no_unsafe_advice(batch, case, program):
    line = error_line(batch[case], program)
    assert_says(line, "notes.ckpt: not a checkpoint written by msr-train", "not a PyTorch checkpoint")
    assert "weights_only" not in batch[case]["stderr"]


def test_checkpoint_of_other_classes(batch):
    line = error_line(batch["ckpt_other_classes"])
    assert_says(
        line, "cannot resume this run from it, its model differs", "trained on 6 categories, this data has 1"
    )
    assert_says(line, "init.weights=")


# -- run folders --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["readonly_run_folder", "uncreatable_run_folder"])
def test_run_folder_that_cannot_be_written(batch, case):
    assert_says(error_line(batch[case]), "cannot write the run folder (", "hydra.run.dir=<folder>")


# -- msr-predict, msr-eval, msr-convert -----------------------------------------------------------------


def test_predict_without_images_names_the_key_to_give(batch):
    line = error_line(batch["predict_without_images"], "msr-predict")
    assert_says(line, "give images=<folder of pictures> on the command line")
    assert "predict_images" not in batch["predict_without_images"]["stderr"]


def test_eval_of_ground_truth_with_a_one_point_polygon(batch):
    line = error_line(batch["eval_polygon"], "msr-eval")
    assert_says(line, "annotation 105 (image 5) has a polygon of 1 point", "COCOeval cannot score them")


def test_results_json_that_is_an_object(batch):
    line = error_line(batch["results_object"], "msr-eval")
    assert_says(line, "object.json: must be a JSON list of detections", "got a JSON object")


def test_nan_score(batch):
    assert_says(error_line(batch["nan_score"], "msr-eval"), "nan.json[1]: 'score' is nan", "finite")


def test_convert_of_an_empty_via_file(batch):
    assert_says(error_line(batch["via_empty"], "msr-convert"), "empty.json: lists no pictures")
    assert not (batch["via_empty"]["root"] / "o.json").exists()


def test_convert_to_an_unwritable_place(batch):
    assert_says(
        error_line(batch["convert_unwritable_out"], "msr-convert"), "cannot write", "choose another --out"
    )


def test_convert_warns_of_regions_without_area_or_outside_the_picture(batch):
    result = batch["convert_regions"]
    assert result["rc"] == 0, result["stderr"]
    warnings = result["stderr"]
    assert_says(
        warnings, "region 0 of a.png has zero area", "region 1 of a.png lies outside the 64x64 picture"
    )
    assert_says(warnings, "region 2 of a.png reaches outside the 64x64 picture; clipped")
    coco = json.loads((result["root"] / "regions_coco.json").read_text())
    assert len(coco["annotations"]) == 2
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 < ann["area"] <= 64 * 64 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64


# -- checkpoints that only unpickling can read: refused unless the user allows it by name ----------------


@pytest.mark.parametrize(
    ("case", "program", "option"),
    [
        ("untrusted_init", "msr-train", "init.trust_pickle=true"),
        ("untrusted_eval", "msr-eval", "trust_pickle=true"),
        ("untrusted_predict", "msr-predict", "trust_pickle=true"),
    ],
)
def test_a_checkpoint_that_only_unpickling_reads_is_refused_and_nothing_in_it_runs(
    batch, case, program, option
):
    root = batch[case]["root"]
    assert_says(
        error_line(batch[case], program), f"{root / case}.ckpt holds objects other than tensors", option
    )
    assert not (root / f"{case}.unpickled").exists()  # the object whose unpickling makes this file never ran


def test_trust_pickle_reads_such_a_checkpoint(batch):
    result = batch["trusted_predict"]
    assert result["rc"] == 0, result["stderr"][-3000:]
    assert (result["root"] / "trusted_predict.unpickled").exists()  # it was unpickled, as asked
    assert (result["root"] / "tp" / "segm_results.json").is_file()


def test_hydras_multi_line_override_messages_are_one_line(batch):
    for case in ("added_existing_key", "bad_override_grammar", "bad_trainer_value"):
        line = error_line(batch[case])
        assert batch[case]["stderr"].rstrip("\n").splitlines()[-1] == line, batch[case]["stderr"][-2000:]
        assert (
            "Either remove" not in batch[case]["stderr"]
            and "Error executing job" not in batch[case]["stderr"]
        )
