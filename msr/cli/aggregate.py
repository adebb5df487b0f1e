"""msr-aggregate: one table of a study from the output folders of one or more multiruns.

    msr-aggregate multirun/ablation/2026-11-25_10-00-00                       # a quick look: prints only
    msr-aggregate multirun/ablation/2026-11-25_10-00-00 [more sweeps ...] --out experiments/results/heads

Writes `<out>.md`, `<out>.csv` and `<out>.json` (see `msr.studies.aggregate`): mean ± std over seeds per
variant, the per-seed values and, unless `--bootstrap 0`, each variant's paired contrasts with
`--reference`, each with a 95% interval given these trained models (over val pictures) and one over
training runs (over seeds; below 2 seeds the table says so instead), drawn in `<out>.png`
(`msr.viz.study`). The folds of a k-fold cross-validation (`data.folds=5 data.fold=0..4`) pool into one
variant scored on all their val pictures, and the output says so. Prints the table narrow enough for a
120-column terminal (see `msr.studies.quick_look`); without `--out` it only prints. Exit status 2
with one `msr-aggregate: error: ...` line when a folder or file cannot be read.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from msr.cli.entry import run_entry
from msr.errors import UserError
from msr.files import read_json
from msr.studies.aggregate import aggregate, quick_look


def build_parser() -> argparse.ArgumentParser:
    """Return msr-aggregate's command-line parser."""
    parser = argparse.ArgumentParser(prog="msr-aggregate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", nargs="+", help="multirun sweep folders (or any folders holding job folders)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output path without suffix: writes <out>.md, <out>.csv and <out>.json with the paired 95%% "
        "intervals; without it, the table is printed for a quick look and nothing is written",
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="the reference variant: the one with this name or override (e.g. head=maskiou), else the first "
        "whose name contains this text (default: the first variant)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="replicates of the paired bootstrap over val pictures (95%% intervals); 0: no intervals",
    )
    parser.add_argument("--resample-seeds", action="store_true", help=argparse.SUPPRESS)  # refused below
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run msr-aggregate on the command line `argv` (default: sys.argv); an error the user can fix is one
    line and exit status 2."""
    run_entry("msr-aggregate", lambda: aggregate_command(argv))


def aggregate_command(argv: Sequence[str] | None) -> None:
    """Aggregate the folders of the command line `argv` and print the Markdown table."""
    args = build_parser().parse_args(argv)
    if args.resample_seeds:
        raise UserError(
            "--resample-seeds is gone (redrawing 3 seeds gives their range, not a 95% interval); every "
            "table now has an interval over training runs from the per-seed contrasts"
        )
    print(quick_look(args.folders))
    if args.out is None:
        print("\nmsr-aggregate: nothing written; --out <path> writes the tables with paired 95% intervals")
        return
    md, csv_path = aggregate(args.folders, args.out, args.reference, args.bootstrap, args.seed)
    json_path = md.with_suffix(".json")
    pooled = read_json(json_path, "results file").get("pooled folds note")
    if pooled:
        print("\n" + pooled.rstrip())
    figure = md.with_suffix(".png")
    drawn = f", {figure} (the contrasts drawn)" if figure.is_file() and args.bootstrap > 0 else ""
    print(f"\nmsr-aggregate: wrote {md} (with the paired intervals), {csv_path}{drawn} and {json_path}")


if __name__ == "__main__":
    main()
