"""Small file writers shared by the entry points: text and CSV written atomically (temp file + rename)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write `text` to `path` through a temporary file and a rename; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def save_csv(columns: Sequence[str], rows: Sequence[Sequence], path: str | os.PathLike) -> Path:
    """Write a CSV table (header + rows) atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
