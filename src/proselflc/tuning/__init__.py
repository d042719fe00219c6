"""Sweeps across noise rates and methods: every study side by side in one Ray Tune Tuner, with resume.

Names are imported on first use, so `proselflc --help`, `--version` and `configs` (which import this package's
`cli`) do not pay for Ray and torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "select_best": "proselflc.sweep_contract",
    "SweepConfig": "proselflc.tuning.config",
    "build_sweep_config": "proselflc.tuning.config",
    "load_sweep": "proselflc.tuning.config",
    "rate_dir": "proselflc.tuning.config",
    "check_placeable": "proselflc.tuning.preflight",
    "connect": "proselflc.tuning.preflight",
    "trial_slots": "proselflc.tuning.preflight",
    "SweepInterrupted": "proselflc.tuning.sweep",
    "SweepRunner": "proselflc.tuning.sweep",
    "run_sweep": "proselflc.tuning.sweep",
}
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'proselflc.tuning' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
