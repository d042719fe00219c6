"""Robust across rates: the single configuration per method that is best on average over the sweep's noise
settings (its noise rates, or CIFAR-N's label sets), chosen on noisy validation and never on the test set.

A per-rate choice tunes each method once per noise rate, which a user facing an unknown noise rate cannot
do; SMAC calls choosing one configuration for all instances "optimising across instances", and CIFAR-N's
leaderboard asks for one configuration across its label sets. A configuration counts only where it was
trained full length at every setting of its method: with a seeded random or grid searcher every study of a
method samples the same configurations (`configs/methods.yaml`), with TPE only its random start-up trials
coincide. Each configuration scores the mean of its last-epoch `select_by` over the settings; ties go to the
configuration created first. Its clean test accuracy is reported per setting and on average, beside the
per-rate selections of the results table.

The selection certainty of this choice (analysis.tables, from the per-example correctness of the trials)
can be computed from the trial ids kept in `trial_ids`; it is not computed here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proselflc.analysis.load import hyperparameter_columns
from proselflc.analysis.select import check_select_by
from proselflc.sweep_contract import FINAL_ONLY_KEYS, rate_dir

#: One robust row per (dataset, model, method): its settings are the (noise kind, noise rate) studies.
ROW_KEYS = ["dataset", "model", "method"]
ROBUST_CAPTION = (
    "Robust across rates: per method, the ONE configuration with the best mean noisy-validation score over all "
    "noise settings (each setting trained full length), and its clean test accuracy (%) per setting and on average."
)


def robust_across_rates(df: pd.DataFrame, select_by: str = "val_accuracy", mode: str = "max") -> pd.DataFrame:
    """One row per (dataset, model, method): the configuration best on average over its noise settings.

    Columns: `n_settings`, `n_configs` (configurations trained full length at every setting), the mean
    `score` of `select_by`, `test_accuracy` (mean over the settings) and `test_accuracy@<kind>-<rate>` per
    setting, `trial_ids` (setting -> search trial), and the configuration's hyperparameters. Methods without
    such a configuration get n_configs 0 and NaN.
    """
    check_select_by(df, select_by)
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r}; valid: max, min")
    search = df[(df["phase"] == "search")].dropna(subset=["epoch"])
    last = search.sort_values("epoch", kind="mergesort").groupby(["study", "trial_id"], sort=False).tail(1)
    params = [p for p in hyperparameter_columns(df) if p not in FINAL_ONLY_KEYS]
    rows = []
    for key, group in last.groupby(ROW_KEYS, sort=False):
        settings = list(dict.fromkeys(zip(group["noise_kind"], group["noise_rate"])))
        rows.append({**dict(zip(ROW_KEYS, key)), **_best_common(group, settings, params, select_by, mode)})
    return pd.DataFrame(rows)


def _best_common(
    group: pd.DataFrame, settings: list[tuple[str, float]], params: list[str], select_by: str, mode: str
) -> dict[str, object]:
    used = [p for p in params if group[p].notna().any()]
    score = pd.to_numeric(group[select_by], errors="coerce")
    usable = group[(group["status"] == "completed") & np.isfinite(score.to_numpy(dtype=float))]
    usable = usable.assign(_config=[_config_key(row, used) for _, row in usable.iterrows()])
    order = [c for c in ("trial_order", "trial_id") if c in usable.columns]
    usable = usable.sort_values(order, kind="mergesort")
    # Per configuration: its first-created trial at each setting; kept only if it has one at every setting.
    per_setting = usable.drop_duplicates(["_config", "noise_kind", "noise_rate"])
    counts = per_setting.groupby("_config", sort=False).size()
    common = [c for c in per_setting["_config"].unique() if counts[c] == len(settings)]
    out: dict[str, object] = {"n_settings": len(settings), "n_configs": len(common), "select_by": select_by}
    if not common:
        return {**out, "score": np.nan, "test_accuracy": np.nan}
    chosen = per_setting[per_setting["_config"].isin(common)]
    means = chosen.groupby("_config", sort=False)[select_by].mean()  # in creation order: idxmax keeps the first
    best = means.idxmax() if mode == "max" else means.idxmin()
    trials = chosen[chosen["_config"] == best]
    out.update(score=float(means[best]), test_accuracy=float(pd.to_numeric(trials["test_accuracy"]).mean()))
    ids = []
    for kind, rate in settings:
        at = trials[(trials["noise_kind"] == kind) & (trials["noise_rate"] == rate)].iloc[0]
        out[f"test_accuracy@{rate_dir(kind, rate)}"] = float(at["test_accuracy"])
        ids.append(f"{rate_dir(kind, rate)}:{at['trial_id']}")
    out["trial_ids"] = ",".join(ids)
    first = trials.iloc[0]
    out.update({p: first[p] for p in used})
    return out


def _config_key(row: pd.Series, params: list[str]) -> tuple[str, ...]:
    """The sampled values as text, 12 significant digits: equal draws of one seeded sampler compare equal."""
    return tuple("" if pd.isna(row[p]) else (f"{row[p]:.12g}" if isinstance(row[p], float) else str(row[p])) for p in params)


def robust_row(robust: pd.DataFrame, percent: bool = True) -> pd.DataFrame:
    """The one 'robust across rates' row (methods as columns) to put under the per-rate results table."""
    if robust.empty:
        return pd.DataFrame()
    scale = 100.0 if percent else 1.0
    cells = {
        row["method"]: ("–" if pd.isna(row["test_accuracy"]) else f"{row['test_accuracy'] * scale:.2f}")
        for _, row in robust.iterrows()
    }
    return pd.DataFrame([cells], index=pd.Index(["robust across rates"], name="selection"))
