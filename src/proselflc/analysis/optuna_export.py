"""Every study of a sweep as an Optuna study in an RDB storage, so `optuna-dashboard` can show it.

Only search trials are exported: they are what a study's sampler chose, with per-epoch
intermediate values (the selection metric) and their state as Optuna names it: full-length runs
COMPLETE, runs ASHA stopped early PRUNED, errored and diverged runs FAIL (Optuna's own state for a
crash or a NaN objective). Final seed re-runs are not search trials and stay out. A study is named
`<sweep>/<noise kind>-<rate>/<method>`; exporting a sweep again replaces its studies (a resumed
sweep's new trials then show up) and leaves every other study in the storage alone.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from proselflc.analysis.distributions import search_distributions, trial_params
from proselflc.analysis.load import GROUP_KEYS, load_sweep
from proselflc.analysis.select import selection_mode

#: load_sweep status -> Optuna trial state; "pending" trials (nothing reported) are not exported.
STATES = {
    "completed": TrialState.COMPLETE,
    "stopped": TrialState.PRUNED,
    "errored": TrialState.FAIL,
    "diverged": TrialState.FAIL,
}
#: Last-epoch metrics kept on each exported trial as user attributes (the dashboard lists them).
_ATTR_METRICS = ("val_accuracy", "test_accuracy", "noisy_fit", "noisy_corrected", "clean_fit", "train_loss")


def export_optuna(
    sweep: str | Path | pd.DataFrame,
    storage: str | optuna.storages.RDBStorage,
    select_by: str | None = None,
    mode: Literal["max", "min"] | None = None,
) -> list[str]:
    """Write the sweep's studies into the Optuna RDB `storage` (or its URL); return the study names written.

    `sweep` is a sweep directory or a `load_sweep` frame; `select_by` and `mode` (defaults as in
    `build_report`) are the objective each trial's value and intermediate values hold.
    """
    df = sweep if isinstance(sweep, pd.DataFrame) else load_sweep(sweep)
    metric = select_by or df.attrs.get("metric", "val_accuracy")
    mode = selection_mode(df, metric, mode)
    rdb = open_storage(storage) if isinstance(storage, str) else storage
    spaces = df.attrs.get("search_spaces", {})
    sweep_name = str(df.attrs.get("sweep") or (df["sweep"].iloc[0] if len(df) else "sweep"))
    existing = set(optuna.get_all_study_names(rdb))
    names = []
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        for key, group in df[df["phase"] == "search"].groupby("study", sort=False):
            name = f"{sweep_name}/{key}"
            if name in existing:
                optuna.delete_study(study_name=name, storage=rdb)
            study = optuna.create_study(
                storage=rdb, study_name=name, direction="maximize" if mode == "max" else "minimize"
            )
            first = group.iloc[0]
            for attr in ("sweep", "study", *GROUP_KEYS):
                study.set_user_attr(attr, _plain(first[attr]))
            study.set_user_attr("objective", metric)
            method = str(first["method"])
            trials = _frozen_trials(group, metric, spaces.get(method, {}))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([metric])  # the dashboard's axis reads "val_accuracy", not "Objective 0"
                study.add_trials(trials)
            names.append(name)
    finally:
        optuna.logging.set_verbosity(previous)
    return names


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at `url` (created if new), or a ValueError naming the URL and the form expected."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            f"--optuna-storage {url!r} is not a database URL; use an SQLAlchemy URL such as "
            "sqlite:///optuna.db (relative path) or sqlite:////abs/path/optuna.db"
        )
    try:
        return optuna.storages.RDBStorage(url)
    except (SQLAlchemyError, ValueError, ImportError) as exc:  # bad URL, unknown driver, unreachable
        raise ValueError(f"--optuna-storage {url!r}: Optuna cannot open it ({exc})") from None


def _frozen_trials(group: pd.DataFrame, metric: str, space: dict[str, dict[str, Any]]) -> list[FrozenTrial]:
    """One FrozenTrial per reported search trial of one study, in the order the study created them."""
    distributions = search_distributions(group, space)
    ordered = group.assign(_order=group["trial_order"].fillna(math.inf)).sort_values(
        ["_order", "trial_id", "epoch"], kind="mergesort"
    )
    out = []
    for _, rows in ordered.groupby("trial_id", sort=False):
        first = rows.iloc[0]
        state = STATES.get(str(first["status"]))
        if state is None:
            continue
        reported = rows.dropna(subset=["epoch"])
        curve = {
            int(epoch): float(value)
            for epoch, value in zip(reported["epoch"], pd.to_numeric(reported[metric], errors="coerce"))
            if math.isfinite(value)
        }
        value = curve[max(curve)] if curve else None
        if value is None and state != TrialState.FAIL:
            state = TrialState.FAIL
        params = trial_params(first, distributions)
        last = reported.iloc[-1] if len(reported) else first
        attrs = {"trial_id": str(first["trial_id"]), "trial_dir": str(first["trial_dir"]), "status": first["status"]}
        attrs.update({m: float(last[m]) for m in _ATTR_METRICS if m in last.index and _finite(last[m])})
        out.append(
            optuna.trial.create_trial(
                state=state,
                value=None if state == TrialState.FAIL else value,
                params=params,
                distributions={p: distributions[p] for p in params},
                intermediate_values=curve,
                user_attrs=attrs,
            )
        )
    return out


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """A JSON-serialisable scalar (numpy scalars become Python ones) for study attributes."""
    return value.item() if hasattr(value, "item") else value
