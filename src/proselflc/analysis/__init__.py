"""Offline analysis of a sweep: tidy DataFrame -> selection vs. oracle -> tables, importances, plots.

    df = load_sweep("runs/quickstart")
    best = best_configs(df)                      # selected on noisy validation, oracle beside it
    print(results_table(best).to_markdown())     # rows noise rates, columns methods
    print(summary("runs/quickstart"))            # what `make demo` prints at the end

Names are imported on first use, so `proselflc train` does not pay for matplotlib and Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "importance": "importances",
    "search_cost": "importances",
    "study_from_trials": "importances",
    "GROUP_KEYS": "load",
    "STATUSES": "load",
    "hyperparameter_columns": "load",
    "load_sweep": "load",
    "read_manifest": "load",
    "NoResults": "report",
    "Report": "report",
    "build_report": "report",
    "dynamics": "report",
    "summary": "report",
    "write_report": "report",
    "best_configs": "select",
    "trial_summary": "select",
    "FORMATS": "tables",
    "ResultsTable": "tables",
    "results_table": "tables",
    "memorisation_table": "tables",
    "certainty_table": "tables",
}
__all__ = [
    "FORMATS",
    "GROUP_KEYS",
    "STATUSES",
    "NoResults",
    "Report",
    "ResultsTable",
    "best_configs",
    "build_report",
    "certainty_table",
    "dynamics",
    "hyperparameter_columns",
    "importance",
    "load_sweep",
    "memorisation_table",
    "read_manifest",
    "results_table",
    "search_cost",
    "study_from_trials",
    "summary",
    "trial_summary",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'proselflc.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"proselflc.analysis.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
