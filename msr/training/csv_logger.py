"""A CSV logger whose history survives a resume (the `_target_` of msr/conf/logger/csv.yaml).

Lightning's CSVLogger deletes `metrics.csv` when its folder is not empty, so resuming a run in its own
folder lost every row logged before the resume, and it rewrites the file in place when new columns
appear, so a kill during that rewrite left a damaged file. `ResumableCSVLogger` keeps the rows already in
the file, rewrites the file only atomically (new columns, rewind), appends otherwise, flushes with every
checkpoint, and on resume forgets the rows beyond the checkpoint's step (`rewind`, called by
`msr.training.resume.ExactResume`) and replaces the rows that the resumed run logs again.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from msr.compat import cached_experiment, set_cached_experiment
from msr.files import atomic_path, no_room


def _read_rows(path: str) -> tuple[list[str], list[dict[str, str]], bool]:
    """Return (header, rows, whether a last line cut short by a kill was left out) of a metrics CSV."""
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    cut_short = bool(text) and not text.endswith("\n")
    if cut_short:
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows, cut_short


def _step(row: dict[str, Any]) -> float:
    """Return the `step` of a row (infinite when it cannot be read)."""
    try:
        return float(row.get("step"))
    except (TypeError, ValueError):
        return float("inf")


def _signature(row: dict[str, Any]) -> tuple[float, frozenset[str]]:
    """Return what identifies a logged row: its step and the names of the values it holds."""
    return _step(row), frozenset(k for k, v in row.items() if k != "step" and v not in (None, ""))


class ResumableExperimentWriter(ExperimentWriter):
    """Lightning's CSV experiment writer that continues an existing `metrics.csv` instead of deleting it.

    A row logged again with the step and the names of a row already in the file (a step or an evaluation
    that a resumed run repeats) replaces that row.
    """

    def __init__(self, log_dir: str) -> None:
        # not ExperimentWriter.__init__: it deletes an existing metrics.csv
        self.hparams: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        os.makedirs(log_dir, exist_ok=True)
        self._earlier: set[tuple[float, frozenset[str]]] = set()  # rows the file held before this run
        if os.path.isfile(self.metrics_file_path):
            header, rows, cut_short = _read_rows(self.metrics_file_path)
            self.metrics_keys = header
            self._earlier = {_signature(r) for r in rows}
            if cut_short:  # killed in the middle of an append: the partial last line goes
                self._write_all(header, rows)

    def _write_all(self, header: list[str], rows: list[dict[str, Any]]) -> None:
        """Replace metrics.csv atomically with `header` and `rows`."""
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)

    def rewind(self, step: int) -> None:
        """Forget the rows (written or pending) whose step is beyond `step`."""
        self.metrics = [m for m in self.metrics if _step(m) <= step]
        if os.path.isfile(self.metrics_file_path):
            header, rows, _ = _read_rows(self.metrics_file_path)
            self._write_all(header, [r for r in rows if _step(r) <= step])

    def save(self) -> None:
        """Write the pending rows: appended, or the whole file rewritten atomically when there are new
        columns or rows that replace earlier ones."""
        if not self.metrics:
            return
        new_keys = self._new_keys()
        exists = os.path.isfile(self.metrics_file_path)
        repeated = {_signature(m) for m in self.metrics} & self._earlier
        if new_keys or repeated or not exists:
            old = _read_rows(self.metrics_file_path)[1] if exists else []
            kept = [r for r in old if _signature(r) not in repeated]
            self._write_all(self.metrics_keys, kept + self.metrics)
            self._earlier -= repeated
        else:
            self._append(self.metrics)
        self.metrics = []

    def _new_keys(self) -> set[str]:
        """Return the names of the pending rows that the header lacks, after adding them to it (sorted)."""
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        self.metrics_keys = sorted([*self.metrics_keys, *new_keys])
        return new_keys

    def _append(self, rows: list[dict[str, Any]]) -> None:
        """Append `rows` to metrics.csv; on a full disk (or quota, or file-size limit) cut the file back to
        its earlier rows and raise `msr.files.WriteFailed` naming it."""
        size = os.path.getsize(self.metrics_file_path)
        try:
            with open(self.metrics_file_path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self.metrics_keys).writerows(rows)
        except OSError as err:
            failed = no_room(err, self.metrics_file_path, kept=True)
            if failed is None:
                raise
            os.truncate(self.metrics_file_path, size)  # no partial row: the earlier rows stay whole
            raise failed from err


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger (`<save_dir>/<name>/<version>/metrics.csv`) that keeps its history on resume."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ResumableExperimentWriter:
        """Return the writer of metrics.csv and hparams.yaml (created on first use)."""
        if cached_experiment(self) is None:
            set_cached_experiment(self, ResumableExperimentWriter(log_dir=self.log_dir))
        return cached_experiment(self)

    @rank_zero_only
    def rewind(self, step: int) -> None:
        """Forget the rows beyond `step` (a resume from a checkpoint of that global step)."""
        self.experiment.rewind(step)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Flush the pending rows, so that what a checkpoint holds is also in metrics.csv."""
        self.save()
