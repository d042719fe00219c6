"""`proselflc report SWEEP_DIR`: print the results table, write every export and plot to --out.

SWEEP_DIR may be a URI (s3://bucket/prefix/<sweep>): its results are read through pyarrow, as Ray Tune
wrote them, and the report goes to a local directory (default ./<sweep>-report), into the bucket only when
--out is a URI too.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from proselflc.analysis.tables import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the `report` subcommand (the lead's cli.py owns the parser and --debug)."""
    parser.add_argument(
        "sweep_dir",
        metavar="SWEEP_DIR",
        help="sweep directory written by `proselflc tune` (<storage_path>/<sweep name>), or its URI "
        "(s3://bucket/prefix/<sweep name>)",
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
        "--out",
        default=None,
        help="directory for exports and plots (default: SWEEP_DIR/report; ./<sweep name>-report when SWEEP_DIR "
        "is a URI); a URI writes them there",
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


@contextlib.contextmanager
def _output(sweep: str, out: str | None) -> Iterator[Path | None]:
    """The local directory the report is written to; a URI --out is uploaded once the report is complete."""
    from proselflc import storage

    if out is not None and storage.is_uri(out):
        storage.resolve(out, "--out")  # an unknown scheme fails before the report is built
        with tempfile.TemporaryDirectory(prefix="proselflc-report-") as tmp:
            yield Path(tmp)
            storage.upload_dir(Path(tmp), out)
        return
    if out is None and storage.is_uri(sweep):
        yield Path(f"{storage.uri_name(sweep)}-report")
        return
    yield None if out is None else Path(out)


def run(args: argparse.Namespace) -> int:
    """Read the sweep (through pyarrow for a URI), write the report and print the main table."""
    from proselflc import storage

    with storage.local_copy(args.sweep_dir) as sweep_dir, _output(args.sweep_dir, args.out) as out:
        _report(args, sweep_dir, out)
    return 0


def _report(args: argparse.Namespace, sweep_dir: Path, out: Path | None) -> None:
    """Write the report and print the main table; errors surface as ValueError for the CLI to format."""
    from proselflc.analysis.progress import read_progress
    from proselflc.analysis.report import (  # deferred: matplotlib/optuna only when reporting
        robust_md,
        write_report,
    )
    from proselflc.storage import is_uri

    progress = read_progress(sweep_dir, shown_as=args.sweep_dir)
    if args.strict:
        progress.require_finished()
    if progress.running:  # first line of the output: a partial table must not pass for the final one
        print("\n".join([progress.headline(), *progress.marks(), ""]), flush=True)

    storage = None
    if args.optuna_storage:
        from proselflc.analysis.optuna_export import open_storage

        storage = open_storage(args.optuna_storage)  # a bad URL fails before any file is written
    report = write_report(
        sweep_dir,
        out=out,
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
    robust = robust_md(report)
    if robust:
        print("\n" + "\n".join(robust).rstrip())
    if report.published is not None:
        from proselflc.analysis.published import display

        print("\nPublished vs. reproduced (%):\n")
        print(display(report.published).to_markdown(index=False))
    written = report.files[0].parent if report.files else out
    print(f"\nwrote {len(report.files)} file(s) to {args.out if is_uri(args.out or '') else written}")
    if storage is not None:
        from proselflc.analysis.optuna_export import export_optuna

        names = export_optuna(sweep_dir, storage, select_by=args.select_by, mode=args.mode)
        print(f"exported {len(names)} Optuna stud{'y' if len(names) == 1 else 'ies'} to {args.optuna_storage}")
