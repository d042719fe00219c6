"""`proselflc report SWEEP_DIR`: print the results table, write every export and plot to --out."""

from __future__ import annotations

import argparse
from pathlib import Path

from proselflc.analysis.tables import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the `report` subcommand (the lead's cli.py owns the parser and --debug)."""
    parser.add_argument(
        "sweep_dir",
        metavar="SWEEP_DIR",
        type=Path,
        help="sweep directory written by `proselflc tune` (<storage_path>/<sweep name>)",
    )
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=FORMATS,
        metavar="FORMAT",
        help=f"export format to write, repeatable ({', '.join(FORMATS)}; default: all)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="directory for exports and plots (default: SWEEP_DIR/report)"
    )
    parser.add_argument(
        "--select-by",
        default=None,
        help="noisy-validation metric that selects configs (default: the sweep's metric)",
    )
    parser.add_argument(
        "--mode",
        choices=("max", "min"),
        default=None,
        help="whether --select-by is maximised or minimised (default: the sweep's mode for its metric, "
        "else the metric's better direction)",
    )
    parser.add_argument(
        "--scope",
        choices=("last", "all"),
        default="last",
        help="score each full-length trial at its last epoch (default, the config `tune` "
        "re-runs) or let every (trial, epoch) compete",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG/PDF figures")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse a sweep that is still running or was stopped (default: report it, marked PARTIAL)",
    )
    parser.add_argument(
        "--published",
        metavar="FILE",
        type=Path,
        default=None,
        help="CSV of published numbers (e.g. configs/paper/published.csv) shown beside the reproduced ones, "
        "with the difference, in every export",
    )
    parser.add_argument(
        "--optuna-storage",
        metavar="URL",
        default=None,
        help="also write every study's search trials into this Optuna RDB storage "
        "(e.g. sqlite:///optuna.db) for `optuna-dashboard URL`; re-exporting replaces the sweep's studies",
    )


def run(args: argparse.Namespace) -> int:
    """Write the report and print the main table; errors surface as ValueError for the CLI to format."""
    from proselflc.analysis.progress import read_progress
    from proselflc.analysis.report import write_report  # deferred: matplotlib/optuna only when reporting

    progress = read_progress(args.sweep_dir)
    if args.strict:
        progress.require_finished()
    if progress.running:  # first line of the output: a partial table must not pass for the final one
        print("\n".join([progress.headline(), *progress.marks(), ""]), flush=True)

    storage = None
    if args.optuna_storage:
        from proselflc.analysis.optuna_export import open_storage

        storage = open_storage(args.optuna_storage)  # a bad URL fails before any file is written
    report = write_report(
        args.sweep_dir,
        out=args.out,
        formats=tuple(args.formats or FORMATS),
        select_by=args.select_by,
        figures=not args.no_plots,
        scope=args.scope,
        mode=args.mode,
        published=args.published,
    )
    print(report.table.caption())
    print()
    print(report.table.to_markdown())
    if report.published is not None:
        from proselflc.analysis.published import display

        print("\nPublished vs. reproduced (%):\n")
        print(display(report.published).to_markdown(index=False))
    out = report.files[0].parent if report.files else args.out
    print(f"\nwrote {len(report.files)} file(s) to {out}")
    if storage is not None:
        from proselflc.analysis.optuna_export import export_optuna

        names = export_optuna(args.sweep_dir, storage, select_by=args.select_by, mode=args.mode)
        print(f"exported {len(names)} Optuna stud{'y' if len(names) == 1 else 'ies'} to {args.optuna_storage}")
    return 0
