"""Sweeps across noise rates and methods: every study side by side in one Ray Tune Tuner, with resume."""

from proselflc.sweep_contract import select_best
from proselflc.tuning.config import SweepConfig, build_sweep_config, load_sweep, rate_dir
from proselflc.tuning.preflight import check_placeable, connect, trial_slots
from proselflc.tuning.sweep import SweepInterrupted, SweepRunner, run_sweep

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
    "trial_slots",
]
