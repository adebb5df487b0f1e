"""msr-convert: annotations to COCO instances JSON (VIA files or instance label PNGs).

    msr-convert via data/balloon/train/via_region_data.json --out balloon_train.json --category balloon
    msr-convert masks labels/ --images pictures/ --out instances.json --category thing

Exit status 0 on success, 2 with one `msr-convert: error: ...` line when an input is at fault.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from msr.cli.entry import run_entry
from msr.data.convert import masks_to_coco, via_to_coco
from msr.errors import DatasetError, UserError
from msr.files import WriteFailed, read_json, write_json_atomic


def _parser() -> argparse.ArgumentParser:
    """Return the argument parser of msr-convert (sub-commands `via` and `masks`)."""
    parser = argparse.ArgumentParser(
        prog="msr-convert", description="Convert annotations to COCO instances JSON."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    via = sub.add_parser("via", help="VGG Image Annotator JSON (polygons, rects, circles, ellipses)")
    via.add_argument("via_json", type=Path, help="VIA annotation file, e.g. via_region_data.json")
    via.add_argument("--images", type=Path, default=None, help="image folder (default: the JSON's folder)")
    via.add_argument("--out", type=Path, required=True, help="COCO JSON to write")
    via.add_argument("--category", default="object", help="category of every region (default: object)")
    via.add_argument("--category-attribute", default=None, help="region attribute holding the category")

    masks = sub.add_parser("masks", help="instance label PNGs (value = instance id, 0 = background)")
    masks.add_argument("mask_dir", type=Path, help="folder of label PNGs, named like the pictures")
    masks.add_argument("--images", type=Path, required=True, help="image folder")
    masks.add_argument("--out", type=Path, required=True, help="COCO JSON to write")
    masks.add_argument("--category", default=None, help="category of every instance (or of unmapped ones)")
    masks.add_argument(
        "--category-map",
        type=Path,
        default=None,
        help='JSON {"<mask stem>|*": {"<value>": "<category>"}} mapping instance values to categories',
    )
    return parser


def _convert(args: argparse.Namespace) -> dict:
    """Return the COCO dict the parsed command line asks for."""
    if args.command == "via":
        return via_to_coco(args.via_json, args.images, args.category, args.category_attribute)
    category_map = None
    if args.category_map is not None:
        category_map = read_json(args.category_map, what="category map", error=DatasetError)
        if not isinstance(category_map, dict):
            raise DatasetError(f"{args.category_map}: expected a JSON object")
    return masks_to_coco(args.mask_dir, args.images, args.category, category_map)


def main(argv: Sequence[str] | None = None) -> int:
    """Run msr-convert; return the exit status (0 on success; 2 with one error line otherwise)."""
    return run_entry("msr-convert", lambda: convert_command(argv))


def convert_command(argv: Sequence[str] | None) -> int:
    """Convert what the command line `argv` names, write the COCO JSON and say so; return 0."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    data = _convert(args)
    try:
        out = write_json_atomic(data, args.out)
    except WriteFailed:  # a full disk, quota or file-size limit: its message names the file
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(args.out) else ""
        raise UserError(f"cannot write {args.out}: {reason}{where}; choose another --out") from None
    print(
        f"wrote {out}: {len(data['images'])} images, {len(data['annotations'])} instances, "
        f"{len(data['categories'])} categories"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
