"""What mattered and what it cost: fANOVA hyperparameter importance and epochs saved by early stopping.

Importance is computed by Optuna's own evaluators on an in-memory study rebuilt from the trials,
so it works offline on any sweep, whichever searcher produced it. Each trial's objective is the
score selection uses (its best `select_by` over its epochs); distributions come from the search
space recorded in sweep.yaml, falling back to the sampled values' range and kind.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.importance import BaseImportanceEvaluator, FanovaImportanceEvaluator
from optuna.trial import TrialState

from proselflc.analysis.distributions import search_distributions, trial_params
from proselflc.analysis.load import GROUP_KEYS
from proselflc.analysis.select import check_select_by


def importance(
    df: pd.DataFrame,
    select_by: str = "val_accuracy",
    mode: str = "max",
    evaluator: BaseImportanceEvaluator | None = None,
    spaces: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> pd.DataFrame:
    """Long frame (GROUP_KEYS, param, importance, n_trials) of each study's hyperparameter importances.

    Only hyperparameters that vary across a study's search trials are scored; a study with fewer
    than two scored trials, nothing varying, or the same score for every trial yields no rows. Importances of a study sum to 1.
    `spaces` ({method: {param: domain spec}}, default: the sweep.yaml spaces `load_sweep` recorded)
    gives the searched ranges; parameters it does not cover get ranges inferred from their values.
    """
    check_select_by(df, select_by)
    spaces = df.attrs.get("search_spaces", {}) if spaces is None else spaces
    rows: list[dict[str, Any]] = []
    search = df[df["phase"] == "search"]
    for key, group in search.groupby(GROUP_KEYS, sort=False, dropna=False):
        method = dict(zip(GROUP_KEYS, key))["method"]
        study = study_from_trials(group, select_by, mode, spaces.get(str(method), {}))
        if study is None:
            continue
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        n_complete = len(complete)
        if len({t.value for t in complete}) < 2:
            # Every trial scored the same: no hyperparameter explains any variance (fANOVA is undefined).
            continue
        scores = optuna.importance.get_param_importances(
            study, evaluator=evaluator or FanovaImportanceEvaluator(seed=0), normalize=True
        )
        for param, value in scores.items():
            rows.append(
                {
                    **dict(zip(GROUP_KEYS, key)),
                    "param": param,
                    "importance": float(value),
                    "n_trials": n_complete,
                }
            )
    return pd.DataFrame(rows, columns=[*GROUP_KEYS, "param", "importance", "n_trials"])


def study_from_trials(
    group: pd.DataFrame, select_by: str, mode: str = "max", space: dict[str, dict[str, Any]] | None = None
) -> optuna.Study | None:
    """An in-memory Optuna study holding one FrozenTrial per search trial of `group`, or None if too few.

    Errored trials enter as FAIL (their score says nothing about the config); diverged ones as
    COMPLETE with their best score before diverging, since divergence is an outcome of the config.
    """
    distributions = search_distributions(group, space, varying_only=True)
    if not distributions:
        return None
    frozen = []
    for _, rows in group.groupby("trial_id", sort=False):
        values = pd.to_numeric(rows[select_by], errors="coerce").to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        params = trial_params(rows.iloc[0], distributions)
        if len(params) < len(distributions):
            continue
        if rows["status"].iloc[0] == "errored":
            state, value = TrialState.FAIL, None
        elif finite.size:
            state, value = TrialState.COMPLETE, float(finite.max() if mode == "max" else finite.min())
        else:
            state, value = TrialState.FAIL, None
        frozen.append(
            optuna.trial.create_trial(
                state=state, value=value, params=params, distributions=distributions
            )
        )
    if sum(t.state == TrialState.COMPLETE for t in frozen) < 2:
        return None
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.add_trials(frozen)
    finally:
        optuna.logging.set_verbosity(previous)
    return study


def cost_sentence(cost: pd.DataFrame) -> str | None:
    """One sentence for a `search_cost` frame: epochs trained of the full budget, what early stopping saved,
    and what was not trained because trials diverged or errored (not a saving of the scheduler's)."""
    trained, full = float(cost["epochs_trained"].sum()), float(cost["epochs_full"].sum())
    if not full:
        return None
    saved = float(cost["epochs_saved"].sum()) if "epochs_saved" in cost else full - trained
    lost = full - trained - saved
    tail = f"; {lost / full:.0%} not run: trials diverged or errored" if lost > 0 else ""
    return f"Search cost: {trained:g} of {full:g} epochs trained ({saved / full:.0%} saved by early stopping{tail})."


def search_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Per study: epochs the search trained vs. the epochs the same trials would run without early stopping.

    epochs_full counts every search trial at its full length (max_epochs); epochs_saved counts the epochs the
    scheduler cut from the trials it stopped (status "stopped"), so saved = epochs_saved / epochs_full is what
    early stopping bought; a diverged or errored trial's missing epochs are neither trained nor saved.
    final_epochs is the cost of the final-seed re-runs on top.
    """
    last = df.dropna(subset=["epoch"]).groupby(["study", "phase", "trial_id"], sort=False)["epoch"].max()
    per_trial = df.drop_duplicates(["study", "phase", "trial_id"]).set_index(["study", "phase", "trial_id"])
    per_trial = per_trial.assign(trained=last.reindex(per_trial.index).fillna(0.0))
    if "time_total_s" in df.columns:
        time = (
            df.dropna(subset=["epoch"])
            .groupby(["study", "phase", "trial_id"], sort=False)["time_total_s"]
            .max()
        )
        per_trial = per_trial.assign(time_s=time.reindex(per_trial.index).fillna(0.0))
    else:
        per_trial = per_trial.assign(time_s=np.nan)
    rows = []
    for key, group in per_trial.reset_index().groupby(GROUP_KEYS, sort=False, dropna=False):
        search = group[group["phase"] == "search"]
        final = group[group["phase"] == "final"]
        trained = float(search["trained"].sum())
        full = float(search["max_epochs"].sum())
        stopped = search[search["status"] == "stopped"]
        saved = float((stopped["max_epochs"] - stopped["trained"]).clip(lower=0).sum())
        rows.append(
            {
                **dict(zip(GROUP_KEYS, key)),
                "n_trials": len(search),
                "epochs_trained": trained,
                "epochs_full": full,
                "epochs_saved": saved,
                "saved": saved / full if full else math.nan,
                "search_time_s": float(search["time_s"].sum()),
                "final_runs": len(final),
                "final_epochs": float(final["trained"].sum()),
            }
        )
    columns = [
        *GROUP_KEYS,
        "n_trials",
        "epochs_trained",
        "epochs_full",
        "epochs_saved",
        "saved",
        "search_time_s",
        "final_runs",
        "final_epochs",
    ]
    return pd.DataFrame(rows, columns=columns)
