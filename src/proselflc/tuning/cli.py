"""`proselflc tune SWEEP [--resume] [--set key=value ...]`: the arguments and the run, delegated by cli.py."""

from __future__ import annotations

import argparse
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proselflc.tuning.config import SweepConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep", help="sweep YAML (or <sweep dir>/sweep.yaml), or the name of a shipped one: quickstart, paper/<name>"
    )
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted sweep: its Tuner is restored, finished trials are kept")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a sweep field, e.g. --set num_samples=4 --set base.train.epochs=5")
    parser.add_argument(
        "--verbose", action="store_true", help="show Ray Tune's progress tables and the trial workers' output"
    )
    parser.add_argument(
        "--trust-state", action="store_true",
        help="with --resume: load Ray Tune's saved state without checking it against your signatures "
        "(only for a sweep directory you trust: Ray unpickles it)",
    )


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) stops the sweep as gracefully as Ctrl+C: Tune saves its state."""
    os.kill(os.getpid(), signal.SIGINT)


def _refuse_existing(sweep: SweepConfig, resume: bool) -> None:
    """A new sweep over an existing sweep directory is refused before Ray starts, not seconds after."""
    from proselflc import storage
    from proselflc.errors import ConfigError
    from proselflc.sweep_contract import SWEEP_FILE

    if not resume and storage.as_dir(storage.join(sweep.sweep_dir, SWEEP_FILE)).exists():
        raise ConfigError(
            f"sweep directory {str(sweep.sweep_dir)!r} already exists: pass --resume to continue it, or change "
            "the sweep's name or storage_path"
        )


def run(args: argparse.Namespace) -> int:
    """Validate the sweep, connect to Ray (RAY_ADDRESS, or a local instance), run it, print the table."""
    import ray

    from proselflc import plugins, storage
    from proselflc.analysis import summary
    from proselflc.ray_compat import quiet_tune_console
    from proselflc.sweep_contract import SWEEP_FILE
    from proselflc.tuning.config import load_sweep
    from proselflc.tuning.preflight import connect
    from proselflc.tuning.split_check import split_warnings, warning_text
    from proselflc.tuning.sweep import SweepInterrupted, run_sweep

    sweep = load_sweep(args.sweep, args.set)
    _refuse_existing(sweep, args.resume)  # seconds before Ray would start; the runner checks again
    warning = warning_text(split_warnings(sweep))  # before Ray starts: a too-small split is the user's to fix
    if warning:
        print(warning, flush=True)
    if not args.verbose:
        quiet_tune_console()
    started = connect(log_to_driver=args.verbose, runtime_env=plugins.runtime_env(sweep.base.plugins))
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        sweep_dir = run_sweep(
            sweep, resume=args.resume, verbose=1 if args.verbose else 0, trust_state=args.trust_state
        )
    except KeyboardInterrupt as exc:
        if not isinstance(exc, SweepInterrupted):  # stopped before the Tuner ran: what is saved is resumable
            print(f"sweep interrupted; continue with `proselflc tune {storage.join(sweep.sweep_dir, SWEEP_FILE)} --resume`",
                  flush=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if started:
            ray.shutdown()
    print(summary(str(sweep_dir)))
    print(f"results: {sweep_dir}  (proselflc report {sweep_dir})")
    return 0
