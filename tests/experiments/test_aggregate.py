"""msr-aggregate on hand-made job folders (known means and stds) and its errors."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys

import pytest
import yaml

from msr.evaluation.metrics import STUDY_KEYS
from msr.studies.aggregate import AggregateError, Variant, aggregate, find_runs, reference_index, variant_key


def markdown(path):
    """Return the Markdown file's text with runs of spaces squeezed (tabulate pads cells to align)."""
    return re.sub(r" {2,}", " ", path.read_text())


def csv_rows(path):
    """Return the CSV file's rows (header first) as lists of strings."""
    with path.open(newline="") as f:
        return list(csv.reader(f))


def make_job(folder, overrides, metrics, config=None):
    (folder / ".hydra").mkdir(parents=True)
    (folder / "eval").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "eval" / "val_metrics.json").write_text(json.dumps(metrics))
    if config is not None:
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def test_variant_ignores_seed_logging_and_order():
    a = variant_key(
        ["seed=2", "head=none", "experiment=x", "logger=csv", "hydra.sweep.dir=/a", "+trainer.max_time=1:00"]
    )
    b = variant_key(["experiment=x", "head=none", "seed=0"])
    assert a == b == ("experiment=x", "head=none")


def test_mean_and_std_over_seeds_per_variant(tmp_path):
    sweep = tmp_path / "sweep"
    values = {"maskiou": [0.30, 0.34, 0.32], "none": [0.28, 0.30, 0.29]}
    job = 0
    for head, aps in values.items():
        for seed, ap in enumerate(aps):
            metrics = {"segm/AP": ap, "bbox/AP": 0.4, "calib/pearson_class_score": 0.5}
            if head == "maskiou":
                metrics["calib/pearson_mask_score"] = 0.6 + seed / 100
            make_job(sweep / str(job), ["experiment=x", f"head={head}", f"seed={seed}"], metrics)
            job += 1
    make_job(sweep / "9", ["head=none", "experiment=x", "seed=9"], {"segm/AP": float("nan"), "bbox/AP": 0.4})
    md, csv_path = aggregate([sweep], tmp_path / "out" / "heads")
    text = markdown(md)
    assert "Overrides common to every variant: `experiment=x`" in text
    assert "| `head=maskiou` | 3 | 0.320 ± 0.020 | 0.400 ± 0.000 |" in text
    assert "| `head=none` | 4 | 0.290 ± 0.010 |" in text  # the NaN run counts as a seed, not in the mean
    assert "n/a" in text  # Mask R-CNN has no mask-score correlation
    rows = csv_rows(csv_path)
    header = rows[0]
    assert header[:4] == ["variant", "seeds", "segm AP mean", "segm AP std"]
    maskiou = dict(zip(header, rows[1]))
    assert float(maskiou["Pearson(true IoU, mask score) mean"]) == pytest.approx(0.61)
    assert float(maskiou["segm AP std"]) == pytest.approx(0.02)
    assert math.isnan(float(dict(zip(header, rows[2]))["Pearson(true IoU, mask score) mean"]))
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_runs_behind_symbolic_links_are_found_once(tmp_path):
    runs = tmp_path / "runs"
    make_job(runs / "sweep" / "0", ["seed=0"], {"segm/AP": 0.3})
    make_job(runs / "sweep" / "1", ["seed=1"], {"segm/AP": 0.3})
    (runs / "sweep" / "1" / ".hydra" / "overrides.yaml").unlink()  # not a finished job folder
    study = tmp_path / "study"
    study.mkdir()
    (study / "a").symlink_to(runs / "sweep" / "0")
    (study / "same").symlink_to(runs / "sweep" / "0")  # a second link to the same run
    (study / "all").symlink_to(runs)
    (runs / "loop").symlink_to(tmp_path)  # a link back up the tree
    found = find_runs([study])
    assert [run.resolve() for run in found] == [(runs / "sweep" / "0").resolve()]
    assert found[0].parent == study  # named by the path it was found under


def test_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(AggregateError, match="no finished runs"):
        aggregate([tmp_path], tmp_path / "out")
    make_job(tmp_path / "0", ["seed=0"], {})
    (tmp_path / "0" / "eval" / "val_metrics.json").write_text("{broken")
    with pytest.raises(AggregateError, match=r"0/eval/val_metrics.json"):
        aggregate([tmp_path], tmp_path / "out")
    missing, out = str(tmp_path / "missing"), str(tmp_path / "x")
    proc = subprocess.run(
        [sys.executable, "-m", "msr.cli.aggregate", missing, "--out", out], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "missing: no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    # an unreadable results file met while bootstrapping: one line that names it, no traceback
    (tmp_path / "0" / "eval" / "val_metrics.json").write_text(json.dumps({"segm/AP": 0.3}))
    (tmp_path / "0" / "eval" / "segm_results.json").write_text("{broken")
    command = [sys.executable, "-m", "msr.cli.aggregate", str(tmp_path), "--out", out]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("msr-aggregate: error: ") and "0/eval/segm_results.json" in proc.stderr


def config(seed, threshold=0.0, design="concat"):
    model = {"maskiou_threshold": threshold, "maskiou_design": design}
    return {"seed": seed, "logger": {"kind": "csv"}, "model": model}


def test_runs_with_the_same_resolved_config_are_one_variant_across_studies(tmp_path):
    """The default model of two studies is one variant; a variant is named without `study=`."""
    for seed in range(2):
        default = ["study=mask_scoring", "head=maskiou", f"seed={seed}"]
        make_job(tmp_path / "a" / str(seed), default, {"segm/AP": 0.30 + seed / 100}, config(seed))
        threshold = ["study=threshold", "model.maskiou_threshold=0.5", f"seed={seed}"]
        make_job(tmp_path / "d" / str(seed), threshold, {"segm/AP": 0.2}, config(seed, threshold=0.5))
    make_job(tmp_path / "d" / "9", ["study=threshold", "seed=2"], {"segm/AP": 0.32}, config(2))
    md, _ = aggregate([tmp_path / "a", tmp_path / "d"], tmp_path / "out")
    text = markdown(md)
    assert "| `head=maskiou` | 3 | 0.310 ± 0.010 |" in text  # seed 2 came from the threshold study
    assert "| `model.maskiou_threshold=0.5` | 2 | 0.200 ± 0.000 |" in text
    assert "study=" not in text


def test_a_key_added_later_with_a_null_default_leaves_the_variant_the_same(tmp_path):
    older = config(0)
    newer = config(1)
    newer["protocol"] = {"head_max_epochs": None}
    make_job(tmp_path / "0", ["head=none", "seed=0"], {"segm/AP": 0.3}, older)
    make_job(tmp_path / "1", ["head=none", "seed=1"], {"segm/AP": 0.5}, newer)
    assert "| `head=none` | 2 | 0.400 ± 0.141 |" in markdown(aggregate([tmp_path], tmp_path / "out")[0])
    newer["protocol"]["head_max_epochs"] = 2  # a value that is set still makes a variant of its own
    make_job(tmp_path / "2", ["head=none", "seed=2"], {"segm/AP": 0.1}, newer)
    text = markdown(aggregate([tmp_path], tmp_path / "out")[0])
    assert "| `(defaults)` | 2 | 0.400 ± 0.141 |" in text  # head=none is common to both rows
    assert "| `protocol.head_max_epochs=2` | 1 | 0.100 |" in text  # one seed: no spread to show


def test_same_name_different_config_stays_apart_and_says_why(tmp_path):
    make_job(tmp_path / "0", ["head=maskiou", "seed=0"], {"segm/AP": 0.3}, config(0))
    make_job(tmp_path / "1", ["head=maskiou", "seed=1"], {"segm/AP": 0.1}, config(1, design="multiply"))
    text = markdown(aggregate([tmp_path], tmp_path / "out")[0])
    assert "| `model.maskiou_design=concat` | 1 | 0.300 |" in text
    assert "| `model.maskiou_design=multiply` | 1 | 0.100 |" in text


def test_scored_metrics_fill_gaps_and_give_the_per_seed_rescoring_gain(tmp_path):
    for seed, (ap, class_ap) in enumerate([(0.30, 0.26), (0.36, 0.30)]):
        make_job(tmp_path / str(seed), ["head=maskiou", f"seed={seed}"], {"segm/AP": ap}, config(seed))
        scored = {"results": "x.json", "segm/AP": 0.0, "segm_class_score/AP": class_ap}
        (tmp_path / str(seed) / "eval" / "scored_metrics.json").write_text(json.dumps(scored))
    _, csv_path = aggregate([tmp_path], tmp_path / "out")
    header, row = csv_rows(csv_path)
    row = dict(zip(header, row))
    assert float(row["segm AP mean"]) == pytest.approx(0.33)  # val_metrics.json wins over the rescoring
    assert float(row["segm AP, class score only mean"]) == pytest.approx(0.28)
    assert float(row["rescoring gain (segm AP) mean"]) == pytest.approx(0.05)
    assert float(row["rescoring gain (segm AP) std"]) == pytest.approx(math.sqrt(2) * 0.01)
    (tmp_path / "1" / "eval" / "scored_metrics.json").write_text("[1, 2]")
    with pytest.raises(AggregateError, match=r"1/eval/scored_metrics.json: must hold an object"):
        aggregate([tmp_path], tmp_path / "out")


def test_metrics_without_a_value_written_as_null_read_as_missing(tmp_path):
    """msr writes NaN as null (strict JSON); a run without a segm AP has no rescoring gain either."""
    from msr.files import write_json_atomic

    for seed, ap in enumerate([math.nan, 0.30]):
        make_job(tmp_path / str(seed), ["head=maskiou", f"seed={seed}"], {}, config(seed))
        metrics = {"segm/AP": ap, "segm_class_score/AP": 0.26, "calib/pearson_mask_score": math.inf}
        write_json_atomic(metrics, tmp_path / str(seed) / "eval" / "val_metrics.json")
    assert "null" in (tmp_path / "0" / "eval" / "val_metrics.json").read_text()
    record_path = aggregate([tmp_path], tmp_path / "out", replicates=0)[1].with_suffix(".json")
    header, row = csv_rows(tmp_path / "out.csv")
    row = dict(zip(header, row))
    assert row["seeds"] == "2" and float(row["segm AP mean"]) == pytest.approx(0.30)
    assert float(row["rescoring gain (segm AP) mean"]) == pytest.approx(0.04)  # the seed with a value
    runs = json.loads(record_path.read_text())["variants"][0]["runs"]
    assert [r["segm/AP"] for r in runs] == [None, 0.30]


def test_reference_is_the_variant_named_before_one_that_merely_contains_the_text() -> None:
    variants = [Variant(("head=maskiou_multiply",)), Variant(("head=maskiou",)), Variant(("head=none",))]
    assert reference_index(variants, "head=maskiou") == 1  # exact override, not the first substring
    assert reference_index(variants, "multiply") == 0
    assert reference_index(variants, None) == 0
    with pytest.raises(AggregateError, match="head=none"):
        reference_index(variants, "tau")


def test_quick_look_prints_for_120_columns_and_writes_nothing(tmp_path, capsys):
    from msr.cli.aggregate import main

    sweep = tmp_path / "sweep"
    full = {key: 0.5 for key in STUDY_KEYS[:8]}  # no class-score-only, gain or upper-bound columns
    long = ["model.maskiou_head.conv_channels=128", "maskiou_loss.threshold=0.25", "optimizer.lr=0.01"]
    for job, extra in enumerate(([], long)):
        make_job(sweep / str(job), ["experiment=x", *extra, "seed=0"], full)
    before = set(tmp_path.rglob("*"))
    main([str(sweep)])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 120, out
    assert "±" not in out  # one seed a variant
    assert "V2: " + " ".join(sorted(long)) in out  # a long name gets a label and a legend
    text = " ".join(out.split())
    left_out = "Columns left out, no run has them. segm AP, class score only, segm AP, true-IoU upper bound:"
    assert left_out in text
    assert "without evaluation.upper_bound=true" in text and "nothing written" in out
    assert set(tmp_path.rglob("*")) == before
