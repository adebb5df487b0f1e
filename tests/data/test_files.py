"""msr.files: the one atomic writer (temp beside the destination, fsync, rename) and the one JSON reader."""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.env import subprocess_env

from msr.errors import DatasetError, EvaluationError, UserError
from msr.files import (
    atomic_path,
    build_folder_once,
    no_room_cause,
    read_json,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_atomic_path_creates_parents_and_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target  # a temp file in the destination folder
        assert tmp.is_file() and not target.exists()  # the destination is untouched while writing
        tmp.write_text("first")
    assert target.read_text() == "first"
    with atomic_path(target) as tmp:
        tmp.write_text("second")
        assert target.read_text() == "first"  # readers see the old content until the rename
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_atomic_path_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path, failure) -> None:
    target = write_text_atomic("old", tmp_path / "out.txt")
    with pytest.raises(type(failure)), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise failure
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_json_atomic({"x": object()}, tmp_path / "new" / "r.json")
    assert list((tmp_path / "new").iterdir()) == []


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_text_atomic("x", tmp_path / "perm.txt")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0o600


def test_json_and_csv_writers(tmp_path: Path) -> None:
    path = write_json_atomic({"a": [1, 2.5, None]}, tmp_path / "r.json")
    assert path == tmp_path / "r.json" and path.read_text() == '{"a": [1, 2.5, null]}'
    assert write_json_atomic([1], tmp_path / "i.json", indent=2).read_text() == "[\n  1\n]"
    rows = [["a", 1.5], ["b", float("nan")]]
    table = write_csv_atomic(["name", "value, with comma"], rows, tmp_path / "t.csv")
    with table.open(newline="") as f:
        assert list(csv.reader(f)) == [["name", "value, with comma"], ["a", "1.5"], ["b", "nan"]]
    assert write_text_atomic("é\n", tmp_path / "u.txt").read_bytes() == "é\n".encode()


def test_json_writer_writes_strict_json_with_null_for_nan_and_infinity(tmp_path: Path) -> None:
    import math

    import numpy as np

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    record = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": np.float64("nan"), "e": (2, None)}}
    path = write_json_atomic(record, tmp_path / "m.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    strict = json.loads(text, parse_constant=refuse)  # Python's own reader would accept bare NaN
    assert strict == {"a": None, "b": [None, None, 1.5], "c": {"d": None, "e": [2, None]}}


def test_read_json_parses_and_accepts_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_bytes(b'{"k": [1, "\xc3\xa9"]}')
    assert read_json(path) == {"k": [1, "é"]}
    path.write_bytes(json.dumps({"k": 1}).encode("utf-16"))  # with a BOM: json.loads detects it
    assert read_json(path) == {"k": 1}


def test_read_json_errors_name_what_and_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^JSON file not found: .*absent\.json$"):
        read_json(tmp_path / "absent.json")
    with pytest.raises(DatasetError, match=r"^annotation file not found: .*absent\.json$"):
        read_json(tmp_path / "absent.json", "annotation file", DatasetError)
    with pytest.raises(EvaluationError, match=r"^results file is a directory, not a JSON file: "):
        read_json(tmp_path, "results file", EvaluationError)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  1,\n  }')
    where = r"results file .*broken\.json is not valid JSON: .* at line 3, column 3$"
    with pytest.raises(EvaluationError, match=where):
        read_json(broken, "results file", EvaluationError)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(DatasetError, match=r"category map .*latin\.json is not UTF-8 text"):
        read_json(latin, "category map", DatasetError)


def test_user_errors_are_value_errors() -> None:
    assert issubclass(DatasetError, UserError) and issubclass(EvaluationError, UserError)
    assert issubclass(UserError, ValueError)


def test_build_folder_once_writes_once_and_leaves_nothing_on_failure(tmp_path) -> None:
    root = tmp_path / "cache" / "set"
    complete = lambda r: (r / "done").is_file()  # noqa: E731
    calls = []

    def write(folder):
        calls.append(folder)
        (folder / "done").write_text("1")

    assert build_folder_once(root, complete, write) == root and (root / "done").read_text() == "1"
    assert build_folder_once(root, complete, write) == root and len(calls) == 1  # cached: not rewritten
    assert calls[0] != root and not calls[0].exists()  # written elsewhere, renamed into place

    def fail(folder):
        (folder / "half").write_text("x")
        raise RuntimeError("disk full")

    other = tmp_path / "cache" / "other"
    with pytest.raises(RuntimeError, match="disk full"):
        build_folder_once(other, complete, fail)
    assert sorted(p.name for p in other.parent.iterdir()) == ["set"]  # no half folder, no temporary


def test_no_room_is_found_behind_a_library_error() -> None:
    """torch's zip writer raises RuntimeError('... unexpected pos ...') while handling the OSError."""
    full = OSError(errno.EFBIG, "File too large")
    wrapped = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert no_room_cause(wrapped) is None
    wrapped.__context__ = full
    assert no_room_cause(wrapped) is full
    assert no_room_cause(OSError(errno.ENOSPC, "No space left on device")).errno == errno.ENOSPC
    assert no_room_cause(OSError(errno.EACCES, "Permission denied")) is None
    assert no_room_cause(ValueError("x")) is None


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(tmp_path: Path) -> None:
    """A real write beyond a file-size limit (EFBIG, in a subprocess): the earlier file stays whole."""
    target = write_json_atomic({"old": True}, tmp_path / "results.json")
    fresh = tmp_path / "new" / "fresh.json"
    code = f"""
import json, sys
from support.file_size_limit import limit_file_size
from msr.files import WriteFailed, build_folder_once, write_json_atomic
limit_file_size(4096)
messages = []
for path in ({str(target)!r}, {str(fresh)!r}):
    try:
        write_json_atomic(list(range(5000)), path)
    except WriteFailed as err:
        messages.append(str(err))
def fill(folder):
    (folder / "big.bin").write_bytes(bytes(10_000))
try:
    build_folder_once({str(tmp_path / "cache" / "set")!r}, lambda r: False, fill)
except WriteFailed as err:
    messages.append(str(err))
print(json.dumps(messages))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    kept, first, folder = json.loads(proc.stdout)
    assert kept.startswith(f"cannot write {target}: file too large (over the file-size limit")
    assert "(EFBIG); the earlier results.json is kept whole; free some space" in kept
    assert first.startswith(f"cannot write {fresh}: ") and "nothing half-written is left" in first
    assert folder.startswith(f"cannot write {tmp_path / 'cache' / 'set'}: file too large")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert list((tmp_path / "new").iterdir()) == [] and list((tmp_path / "cache").iterdir()) == []
