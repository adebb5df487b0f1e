"""Read an offline W&B run back from its files: the `.wandb` record log and the media it points to.

The `.wandb` file is a LevelDB-style log (a 7-byte ":W&B" header, then 32 KiB blocks of records with a
7-byte header each: crc32, length, type FULL/FIRST/MIDDLE/LAST) of `wandb_internal_pb2.Record` protobufs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    """Return every Record protobuf of a `.wandb` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:  # zero padding to the end of a block
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            pending += payload
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        records.append(record)
        pending = b""
    return records


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _nest(items: Any) -> dict[str, Any]:
    """Return {key: value} of history/summary items; media values come as nested keys and are re-nested."""
    out: dict[str, Any] = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    return out


def history_rows(records: list[Any]) -> list[dict[str, Any]]:
    """Return the logged history rows as {key: decoded value} (media as dicts: _type, path, ...)."""
    return [_nest(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]


def config_values(records: list[Any]) -> dict[str, Any]:
    """Return the run's config: the run record's config plus every later config update."""
    config: dict[str, Any] = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        items = r.run.config.update if kind == "run" else r.config.update if kind == "config" else []
        for i in items:
            config[_item_key(i)] = json.loads(i.value_json)
    return config


def run_record(records: list[Any]) -> Any:
    """Return the first run record (run_id, display_name, run_group, tags)."""
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")


def offline_runs(save_dir: Path) -> list[Path]:
    """Return the offline run folders under `<save_dir>/wandb/`, oldest first."""
    return sorted((save_dir / "wandb").glob("offline-run-*"))


def run_log(run_folder: Path) -> Path:
    """Return the `.wandb` log of an offline run folder."""
    (log,) = run_folder.glob("run-*.wandb")
    return log
