"""Reading and writing the JSON files of COCO evaluation, with errors that name the file at fault."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from msr.evaluation.errors import EvaluationError

PathLike = str | os.PathLike


def load_json(path: PathLike, what: str = "JSON file") -> Any:
    """Return the parsed content of the JSON file at `path`; EvaluationError naming the file if it fails."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EvaluationError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise EvaluationError(f"{what} is a directory, not a JSON file: {path}") from None
    except json.JSONDecodeError as e:
        raise EvaluationError(
            f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except UnicodeDecodeError as e:
        raise EvaluationError(f"{what} {path} is not UTF-8 text: {e}") from None


def save_json_atomic(obj: Any, path: PathLike) -> Path:
    """Write `obj` as JSON to `path` atomically (temporary file in the same folder + os.replace); return it.

    Readers never see a half-written file: either the old content or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


Results = list[dict[str, Any]]
ResultsLike = Results | str | os.PathLike


def load_results(results: ResultsLike) -> tuple[Results, str]:
    """Return (result list, a name for error messages) from a list or the path of a results JSON file."""
    if isinstance(results, (str, os.PathLike)):
        return load_json(results, what="results file"), f"results file {Path(results)}"
    return results, "results"
