"""A data module that only names its val annotation file: the `data` config of a run whose recorded
annotation file has moved (msr.studies.intervals.annotation_file falls back to instantiating it)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class AnnotationsOnly:
    """Names `folder`/`names[0]` as its val annotations; `prepared` lists every prepare_data call."""

    prepared: ClassVar[list[str]] = []

    def __init__(self, folder: str, names: list[str]) -> None:
        if not isinstance(names, list):  # msr's data modules take plain containers (_convert_="all")
            raise TypeError(f"names must be a list, got {type(names).__name__}")
        self.val_ann = Path(folder) / names[0]

    def prepare_data(self) -> None:
        AnnotationsOnly.prepared.append(str(self.val_ann))
