"""EXIF orientation: which reading of a tagged picture msr uses where, decided once here.

Cameras store many photos sideways or upside down with an EXIF orientation tag (2-8) that says how to turn
the stored pixels upright. Viewers, browsers and annotation tools (VIA, labelme) show such a photo turned,
and regions drawn there are in the upright picture's coordinates. msr reads a tagged picture:

- **upright** where the annotations were made on the turned picture: `msr-convert` (VIA files, instance
  masks) writes the sizes and regions of the upright picture and says so in the COCO file it writes
  (`info.exif_orientation: "apply"`); the data sets built from such a file (`data=balloon`, or any file
  msr-convert wrote) read the pictures upright;
- **upright** in msr-predict: pictures are turned upright before predicting; `images.json` gives the
  upright sizes and marks each tagged picture with its `exif_orientation` (and `turned_upright`);
- in other COCO-format files, whose tools differ, as the data option `data.exif_orientation` chooses:
  `apply` (upright), `ignore` (the stored pixels), or `auto` (the default): what the file says in
  `info.exif_orientation`, else `ignore`, the stored pixel grid that a COCO file's `width` and `height`
  describe unless its tool turned the pictures (and the reading of msr before this choice existed).

A data set checks every picture's size in the reading it uses against its annotation file; a picture turned
by a quarter whose size in the file fits only the other reading stops the run with one line naming the
option to set. A data set with tagged pictures says once how many there are and which reading it uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msr.data.image_io import PictureHeader
from msr.errors import ConfigError

#: The data option that chooses the reading of COCO-format data sets.
OPTION = "data.exif_orientation"
#: Its values: `auto` (what the file says, else `ignore`), `apply` (upright), `ignore` (as stored).
READINGS = ("auto", "apply", "ignore")
#: The key of a COCO file's `info` that says how its sizes and regions read tagged pictures.
INFO_KEY = "exif_orientation"
#: What each orientation does to the stored pixels, in words.
TURNS = {
    2: "mirrored",
    3: "turned 180°",
    4: "mirrored upside down",
    5: "mirrored and turned 90°",
    6: "turned 90°",
    7: "mirrored and turned 90°",
    8: "turned 90°",
}


def check_reading(value: Any) -> str:
    """Return `value` when it is one of READINGS; else raise ConfigError naming the option."""
    if value not in READINGS:
        raise ConfigError(f"{OPTION} must be one of {', '.join(READINGS)}, got {value!r}")
    return str(value)


def resolve_reading(option: str, info: Any) -> str:
    """Return the reading ("apply" or "ignore") of a COCO file whose `info` is `info` under `option`."""
    option = check_reading(option)
    if option != "auto":
        return option
    stated = info.get(INFO_KEY) if isinstance(info, Mapping) else None
    return "apply" if stated == "apply" else "ignore"


def _read_as(reading: str) -> str:
    """Return how pictures are read under `reading`, in words."""
    return "read upright" if reading == "apply" else "read as stored"


def orientation_mismatch(
    path: Path, header: PictureHeader, expected: tuple[int, int], reading: str, ann_file: Path, image_id: Any
) -> str | None:
    """Return the message of a picture turned by a quarter whose size in its annotation file (`expected`,
    (height, width)) fits only the reading other than `reading` (that message names the option to set),
    or None when the size fits `reading` or neither."""
    upright = reading == "apply"
    if header.size(upright) == tuple(expected) or header.size(not upright) != tuple(expected):
        return None
    other = "ignore" if reading == "apply" else "apply"
    view = "upright" if other == "apply" else "stored"
    turn = TURNS[header.orientation]
    return (
        f"image {path} is stored {header.width}x{header.height} (WxH) with EXIF orientation "
        f"{header.orientation} ({turn}); {ann_file} says {expected[1]}x{expected[0]} for image {image_id}, "
        f"its {view} size: the file's regions are drawn on the {view} picture: set {OPTION}={other} (now "
        f"{reading}: {_read_as(reading)})"
    )


def tagged_summary(source: Any, tagged: Mapping[Path, int], total: int, option: str, reading: str) -> str:
    """Return the one line that says how many of the `total` pictures of `source` carry an EXIF orientation
    (`tagged`: path -> orientation), what they are, and which reading (`option`, resolved to `reading`)."""
    kinds = Counter(TURNS[o] for o in tagged.values())
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    first = next(iter(tagged))
    chosen = f"{OPTION}={option}" + (f": {reading}" if option != reading else "")
    other = "ignore" if reading == "apply" else "apply"
    view = "upright" if other == "apply" else "stored (unturned)"
    return (
        f"{source}: {len(tagged)} of {total} pictures carry an EXIF orientation ({what}; first: {first}); "
        f"they are {_read_as(reading)} ({chosen}); if the annotations were drawn on the {view} pictures, "
        f"set {OPTION}={other}"
    )
