"""Sweeps of Ray Tune studies (ASHA + seeded Optuna TPE) across noise rates and methods, with resume."""

from proselflc.tuning.config import SweepConfig, build_sweep_config, load_sweep, rate_dir
from proselflc.tuning.preflight import check_placeable, connect
from proselflc.tuning.sweep import SweepInterrupted, SweepRunner, run_sweep, select_best

__all__ = [
    "SweepConfig",
    "SweepInterrupted",
    "SweepRunner",
    "build_sweep_config",
    "check_placeable",
    "connect",
    "load_sweep",
    "rate_dir",
    "run_sweep",
    "select_best",
]
