"""msr-aggregate: one table of a study from the output folders of one or more multiruns.

    msr-aggregate multirun/ablation/2026-11-25_10-00-00 [more sweeps ...] --out experiments/results/heads

Writes `<out>.md` and `<out>.csv` (see `msr.studies.aggregate`) and prints the Markdown table. Exit
status 2 with one `msr-aggregate: error: ...` line when a folder or file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from msr.studies.aggregate import AggregateError, aggregate


def main(argv: Sequence[str] | None = None) -> None:
    """Run msr-aggregate on the command line `argv` (default: sys.argv)."""
    parser = argparse.ArgumentParser(prog="msr-aggregate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", nargs="+", help="multirun sweep folders (or any folders holding job folders)"
    )
    parser.add_argument(
        "--out", required=True, help="output path without suffix: writes <out>.md and <out>.csv"
    )
    args = parser.parse_args(argv)
    try:
        md, _ = aggregate(args.folders, args.out)
    except AggregateError as err:
        print(f"msr-aggregate: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(md.read_text())


if __name__ == "__main__":
    main()
