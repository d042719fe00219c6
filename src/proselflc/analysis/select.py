"""Model selection on noisy validation, with the test-set oracle beside it (never instead of it).

With noisy labels the honest protocol picks a configuration by a metric computed on noisy labels;
the clean test set is read only after the choice, and the oracle column shows how much better a
(cheating) choice by test accuracy would have been: the cost of selecting on noisy labels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from proselflc import metric_table, selection_certainty
from proselflc.analysis.load import GROUP_KEYS, hyperparameter_columns
from proselflc.errors import closest
from proselflc.sweep_contract import (
    FINAL_ONLY_KEYS,
    SelectionEpoch,
    reported_row,
    select_top,
    uses_clean_labels,
)

#: How much of the noisy subset a run fits with its noisy labels (memorisation) and with its true labels.
MEMORISATION = ("noisy_fit", "noisy_corrected")
#: Final re-runs that ran to their end (a diverged run is a real outcome of the config, so it counts).
FINISHED = ("completed", "diverged")


def check_select_by(df: pd.DataFrame, select_by: str) -> None:
    """Refuse a selection metric that is missing or that looks at clean labels."""
    if uses_clean_labels(select_by):
        raise ValueError(
            f"select_by={select_by!r} is computed with clean labels; selection must use the noisy "
            "validation split (e.g. 'val_accuracy'); the oracle columns show the best by test accuracy"
        )
    if select_by not in df.columns:
        metrics = [c for c in df.columns if "." not in c and pd.api.types.is_numeric_dtype(df[c])]
        raise ValueError(
            f"select_by={select_by!r} is not a metric of this sweep; {closest(select_by, metrics)}"
        )


def selection_mode(df: pd.DataFrame, select_by: str, mode: Literal["max", "min"] | None = None) -> Literal["max", "min"]:
    """`mode` when given; else the sweep's own mode for its own metric, and the metric table's better
    direction (`proselflc.metric_table`) for another. Refuses a missing or clean-label `select_by` first,
    and a `mode` against the table's direction (a metric the table gives none takes either)."""
    check_select_by(df, select_by)
    row = metric_table.get(select_by)
    direction = row.better if row is not None else None
    if mode is not None and direction is not None and mode != direction:
        # As `tune` refuses it: maximising a loss or minimising an accuracy selects the worst configuration.
        raise ValueError(
            f"--mode {mode!r} for --select-by {select_by!r}, whose better direction is {direction!r} in the metric "
            f"table: it would select the worst configuration. Omit --mode (it follows the metric) or give --mode {direction}"
        )
    if mode is not None:
        return mode
    if select_by == df.attrs.get("metric", "val_accuracy"):
        return df.attrs.get("mode", "max")
    return metric_table.better(select_by)


def pick(rows: pd.DataFrame, metric: str, mode: Literal["max", "min"] = "max") -> pd.Series | None:
    """The best (trial, epoch) row by `metric`; ties go to the earlier epoch, then the trial created first
    (as in `proselflc tune`'s own choice; `trial_order`, where the manifest records it), then the smaller id."""
    values = pd.to_numeric(rows[metric], errors="coerce")
    finite = rows[np.isfinite(values.to_numpy(dtype=float))]
    if finite.empty:
        return None
    keys = ["_v", "epoch", *(["trial_order"] if "trial_order" in finite.columns else []), "trial_id"]
    ordered = finite.assign(_v=pd.to_numeric(finite[metric])).sort_values(
        keys, ascending=[mode == "min", *[True] * (len(keys) - 1)], kind="mergesort"
    )
    return ordered.iloc[0].drop("_v")


def best_configs(
    df: pd.DataFrame,
    select_by: str = "val_accuracy",
    mode: Literal["max", "min"] = "max",
    scope: Literal["last", "all"] = "last",
    epoch: SelectionEpoch | None = None,
) -> pd.DataFrame:
    """One row per (dataset, model, noise kind, noise rate, method): the selected config and the oracle.

    epoch (scope="last"; default: the sweep's `selection.epoch`, else "last"): the epoch the selected trial and
    its final re-runs are reported at, their last or their estimated memorisation onset (`reported_row`); the
    choice of configuration is the same either way.

    scope="last" (default, the rule `proselflc tune` uses to pick the config its final seeds re-run):
    each search trial is scored by `select_by` at its last epoch, among trials that ran the full length
    (all non-errored, non-diverged ones if none did). scope="all": every (trial, epoch) competes, as
    when keeping the best checkpoint. Ties go to the earlier epoch, then the trial created first, then
    the smaller trial id.
    Reported: the clean test accuracy at the selected epoch and at the trial's end, the memorisation
    figures there, the trial's hyperparameters (dotted columns), the final-seed re-runs' test accuracy
    at their last epoch (final_mean, final_std with ddof=1, final_n) and whether they ran the selected
    config, the oracle (best by test accuracy among the same candidates) with
    gap = oracle_test_accuracy - test_accuracy, and the selection's certainty (CERTAINTY_COLUMNS):
    P(it beats the runner-up) by a paired bootstrap of the noisy validation examples, the runner-up's
    trial id, the split's size n_val, kappa and the noise-adjusted effective size n_eff; NaN with
    certainty_note saying why where it cannot be computed.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r}; valid: max, min")
    if scope not in ("last", "all"):
        raise ValueError(f"scope={scope!r}; valid: last, all")
    epoch = epoch or df.attrs.get("selection_epoch", "last")
    if epoch not in ("last", "memorisation_onset"):
        raise ValueError(f"epoch={epoch!r}; valid: last, memorisation_onset")
    check_select_by(df, select_by)
    if "test_accuracy" not in df.columns:
        raise ValueError("the sweep reports no 'test_accuracy'; the tables need the clean test accuracy")
    params = hyperparameter_columns(df)
    stored: dict[str, str] = df.attrs.get("val_correct", {})
    rows = []
    for key, group in df.groupby(GROUP_KEYS, sort=False, dropna=False):
        row: dict[str, object] = dict(zip(GROUP_KEYS, key))
        row["study"] = group["study"].iloc[0]
        row.update(_selected(group[group["phase"] == "search"], select_by, mode, scope, params, stored, epoch))
        row.update(_final(group[group["phase"] == "final"], params, row, epoch))
        rows.append(row)
    out = pd.DataFrame(rows)
    ordered = [c for c in out.columns if c not in params] + [c for c in params if c in out.columns]
    return out[ordered]


def trial_summary(
    df: pd.DataFrame, select_by: str = "val_accuracy", mode: Literal["max", "min"] = "max"
) -> pd.DataFrame:
    """One row per trial: status, epochs trained, its best `select_by`, and its hyperparameters."""
    keys = ["study", *GROUP_KEYS, "phase", "trial_id"]
    agg: dict[str, tuple[str, str]] = {"status": ("status", "first"), "epochs": ("epoch", "max")}
    if select_by in df.columns:
        agg[f"best_{select_by}"] = (select_by, mode)
    for col in ("test_accuracy", "time_total_s"):
        if col in df.columns:
            agg[f"last_{col}"] = (col, "last")
    for col in hyperparameter_columns(df):
        agg[col] = (col, "first")
    return (
        df.sort_values([*keys[:-1], "trial_id", "epoch"])
        .groupby(keys, sort=False, dropna=False)
        .agg(**agg)
        .reset_index()
    )


def candidates(search: pd.DataFrame, select_by: str, scope: str) -> pd.DataFrame:
    """The (trial, epoch) rows that compete: all of them, or each usable trial's last epoch."""
    rows = search.dropna(subset=["epoch"])
    if scope == "all":
        return rows
    last = rows.sort_values("epoch", kind="mergesort").groupby("trial_id", sort=False).tail(1)
    finite = np.isfinite(pd.to_numeric(last[select_by], errors="coerce").to_numpy(dtype=float))
    usable = last[~last["status"].isin(["errored", "diverged"]) & finite]
    full = usable[usable["status"] == "completed"]
    return full if not full.empty else usable


def choose_last(pool: pd.DataFrame, select_by: str, mode: str, k: int = 1) -> pd.Series | None:
    """The trial `proselflc tune` re-runs: THE selection rule (`sweep_contract.select_best`) applied to
    each candidate trial's last row, in the study's trial creation order. k=2: its runner-up instead (the
    second-best eligible trial by the same rule; None when there is none)."""
    if pool.empty:
        return None
    keys = [c for c in ("trial_order", "trial_id") if c in pool.columns]
    ordered = pool.sort_values(keys, kind="mergesort", na_position="last")
    max_t = int(pd.to_numeric(ordered["max_epochs"], errors="coerce").max())
    top = select_top(((index, row.to_dict()) for index, row in ordered.iterrows()), select_by, mode, max_t, k=k)
    return ordered.loc[top[k - 1][0]] if len(top) >= k else None


#: Columns `best_configs` adds for the selection's certainty (see `proselflc.selection_certainty`).
CERTAINTY_COLUMNS = ("certainty", "certainty_runner_up", "n_val", "kappa", "n_eff", "certainty_note")


def _certainty(pool: pd.DataFrame, chosen: pd.Series, select_by: str, mode: str, scope: str,
               stored: dict[str, str]) -> dict[str, object]:
    """P(the choice beats its runner-up) by the paired bootstrap, and the effective validation size, from
    the trials' stored last-epoch correctness (`stored`: trial_dir -> text, `load_sweep`'s attrs)."""
    if scope == "last":
        runner = choose_last(pool, select_by, mode, k=2)
    else:  # the best (trial, epoch) of another trial
        others = pool[pool["trial_id"] != chosen["trial_id"]]
        runner = pick(others, select_by, mode)
    text = lambda row: None if row is None else stored.get(str(row.get("trial_dir", "")))
    found = selection_certainty.certainty(
        text(chosen), text(runner), runner_up_name=None if runner is None else str(runner["trial_id"]),
        chosen_epoch=int(chosen["epoch"]), runner_up_epoch=None if runner is None else int(runner["epoch"]),
    )
    if select_by != "val_accuracy" and found.p_beats_runner_up is not None:
        found = selection_certainty.Certainty(
            None, found.runner_up, found.n_val, found.kappa, found.n_eff,
            reason=f"selected by {select_by}; the bootstrap compares val_accuracy",
        )
    return {
        "certainty": np.nan if found.p_beats_runner_up is None else found.p_beats_runner_up,
        "certainty_runner_up": found.runner_up,
        "n_val": np.nan if found.n_val is None else found.n_val,
        "kappa": np.nan if found.kappa is None else found.kappa,
        "n_eff": np.nan if found.n_eff is None else found.n_eff,
        "certainty_note": found.reason,
    }


def _at_epoch(trial: pd.DataFrame, epoch: SelectionEpoch) -> pd.Series:
    """A trial's row (its rows, any order) that `reported_row` reports."""
    rows = trial.dropna(subset=["epoch"]).sort_values("epoch", kind="mergesort")
    records = rows.to_dict("records")
    return rows.iloc[records.index(reported_row(records, epoch))]


def _selected(
    search: pd.DataFrame, select_by: str, mode: str, scope: str, params: list[str], stored: dict[str, str],
    epoch: SelectionEpoch = "last",
) -> dict[str, object]:
    trials = search.drop_duplicates("trial_id")
    counts = trials["status"].value_counts()
    out: dict[str, object] = {"select_by": select_by, "scope": scope, "n_trials": len(trials)}
    out.update({f"n_{s}": int(counts.get(s, 0)) for s in ("completed", "stopped", "errored", "diverged")})
    pool = candidates(search, select_by, scope)
    chosen = pick(pool, select_by, mode) if scope == "all" else choose_last(pool, select_by, mode)
    oracle = pick(pool, "test_accuracy", "max")
    if chosen is None:
        return out
    # The certainty compares the choice as it was made (its last epoch), whichever epoch is reported.
    certainty = _certainty(pool, chosen, select_by, mode, scope, stored)
    trial = search[search["trial_id"] == chosen["trial_id"]].dropna(subset=["epoch"])
    end = trial.loc[trial["epoch"].idxmax()]
    if scope == "last" and epoch != "last":
        chosen = _at_epoch(trial, epoch)
    out["selection_epoch"] = epoch
    out.update(
        trial_id=chosen["trial_id"],
        status=chosen["status"],
        selected_epoch=chosen["epoch"],
        selected_score=chosen[select_by],
        test_accuracy=chosen["test_accuracy"],
        end_epoch=end["epoch"],
        test_accuracy_end=end["test_accuracy"],
    )
    for col in MEMORISATION:
        if col in search.columns:
            out[col] = chosen[col]
            out[f"{col}_end"] = end[col]
    out.update(certainty)
    if oracle is not None:
        out.update(
            oracle_trial_id=oracle["trial_id"],
            oracle_epoch=oracle["epoch"],
            oracle_test_accuracy=oracle["test_accuracy"],
            gap=float(oracle["test_accuracy"]) - float(chosen["test_accuracy"]),
        )
    out.update({p: chosen[p] for p in params})
    return out


def _final(
    final: pd.DataFrame, params: list[str], selected: dict[str, object], epoch: SelectionEpoch = "last"
) -> dict[str, object]:
    """Mean ± std of the final-seed re-runs' last-epoch test accuracy (empty when there were none)."""
    if final.empty:
        return {
            "final_n": 0,
            "final_mean": np.nan,
            "final_std": np.nan,
            **{f"final_{col}": np.nan for col in MEMORISATION},
            "final_unfinished": 0,
            "final_seeds": "",
            "final_matches_selection": pd.NA,
        }
    done = final.dropna(subset=["epoch"]).sort_values("epoch").groupby("trial_id", sort=False).tail(1)
    finished = done[done["status"].isin(FINISHED)]
    if epoch != "last" and not finished.empty:
        finished = pd.DataFrame([_at_epoch(final[final["trial_id"] == t], epoch) for t in finished["trial_id"]])
    values = pd.to_numeric(finished["test_accuracy"], errors="coerce").dropna()
    n_runs = final["trial_id"].nunique()
    compare = [p for p in params if p not in FINAL_ONLY_KEYS and p in selected]
    runs = final.drop_duplicates("trial_id")
    matches = "trial_id" in selected and all(_same(v, selected[p]) for p in compare for v in runs[p])
    memorisation = {
        f"final_{col}": float(pd.to_numeric(finished[col], errors="coerce").mean()) if col in finished else np.nan
        for col in MEMORISATION
    }
    return {
        **memorisation,
        "final_n": len(values),
        "final_mean": float(values.mean()) if len(values) else np.nan,
        "final_std": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
        "final_unfinished": n_runs - len(values),
        "final_seeds": ",".join(_seed(s) for s in finished["seed"].tolist()),
        "final_matches_selection": matches,
    }


def _seed(value: object) -> str:
    """1 rather than 1.0 when a missing seed elsewhere made the column float."""
    return (
        str(int(value))
        if isinstance(value, (int, float, np.number)) and float(value).is_integer()
        else str(value)
    )


def _same(a: object, b: object) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    return a == b
