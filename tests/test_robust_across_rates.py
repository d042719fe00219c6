"""Robust across rates: the one configuration per method best on average over the noise settings, chosen on
noisy validation (never on test), only among configurations trained full length at every setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proselflc.analysis.robust import robust_across_rates, robust_row

# (method, noise rate, trial id, creation order, status, lr, val_accuracy, test_accuracy)
TRIALS = [
    ("ce", 0.2, "a1", 0, "completed", 0.1, 0.90, 0.95),   # c1: best at 0.2 alone, mean val 0.70
    ("ce", 0.4, "b1", 0, "completed", 0.1, 0.50, 0.99),   #     (its test accuracy must not matter)
    ("ce", 0.2, "a2", 1, "completed", 0.2, 0.80, 0.85),   # c2: mean val 0.75: the robust choice
    ("ce", 0.4, "b2", 1, "completed", 0.2, 0.70, 0.75),
    ("ce", 0.2, "a3", 2, "completed", 0.3, 0.99, 0.10),   # c3: trained at 0.2 only: not comparable
    ("ce", 0.4, "b3", 2, "errored", 0.3, np.nan, np.nan),
    ("ce", 0.2, "a4", 3, "completed", 0.4, 0.95, 0.50),   # c4: stopped early at 0.4: not full length
    ("ce", 0.4, "b4", 3, "stopped", 0.4, 0.95, 0.50),
    ("ce", 0.2, "a5", 4, "completed", 0.5, 0.75, 0.20),   # c5: ties c2's mean but was created later
    ("ce", 0.4, "b5", 4, "completed", 0.5, 0.75, 0.20),
    ("gce", 0.2, "g1", 0, "completed", 0.1, 0.60, 0.60),  # gce: no configuration at both rates
    ("gce", 0.4, "h1", 0, "completed", 0.7, 0.40, 0.40),
]


def _frame() -> pd.DataFrame:
    rows = []
    for method, rate, trial, order, status, lr, val, test in TRIALS:
        for epoch in (1, 2):
            rows.append({
                "study": f"symmetric-{rate:g}/{method}", "dataset": "digits", "model": "mlp", "noise_kind": "symmetric",
                "noise_rate": rate, "method": method, "phase": "search", "trial_id": trial, "trial_order": order,
                "status": status, "epoch": epoch, "val_accuracy": val if epoch == 2 else 0.0,
                "test_accuracy": test if epoch == 2 else 0.0, "optim.lr": lr, "train.seed": 0,
            })  # fmt: skip
    final = {**rows[0], "phase": "final", "trial_id": "f1", "val_accuracy": 1.0, "test_accuracy": 1.0, "optim.lr": 0.9}
    return pd.DataFrame([*rows, final])


def test_the_config_best_on_average_over_the_rates_is_chosen_on_validation() -> None:
    robust = robust_across_rates(_frame()).set_index("method")
    ce = robust.loc["ce"]
    assert (ce["n_settings"], ce["n_configs"]) == (2, 3)  # c1, c2, c5: trained full length at both rates
    assert ce["optim.lr"] == 0.2 and ce["score"] == pytest.approx(0.75)
    assert ce["trial_ids"] == "symmetric-0.2:a2,symmetric-0.4:b2"
    assert ce["test_accuracy@symmetric-0.2"] == 0.85 and ce["test_accuracy@symmetric-0.4"] == 0.75
    assert ce["test_accuracy"] == pytest.approx(0.80)
    gce = robust.loc["gce"]
    assert gce["n_configs"] == 0 and np.isnan(gce["score"]) and np.isnan(gce["test_accuracy"])


def test_min_mode_and_the_row_under_the_table() -> None:
    robust = robust_across_rates(_frame(), select_by="val_accuracy", mode="min").set_index("method")
    assert robust.loc["ce", "optim.lr"] == 0.1  # c1 has the lowest mean
    row = robust_row(robust_across_rates(_frame()))
    assert row.loc["robust across rates"].to_dict() == {"ce": "80.00", "gce": "–"}


def test_a_clean_label_metric_never_selects() -> None:
    with pytest.raises(ValueError, match="computed with clean labels"):
        robust_across_rates(_frame(), select_by="test_accuracy")


@pytest.mark.ray
def test_the_tiny_sweeps_robust_rows_follow_its_trials(tiny_sweep: Path) -> None:
    from proselflc.analysis import load_sweep

    df = load_sweep(tiny_sweep)
    robust = robust_across_rates(df)
    assert sorted(robust["method"]) == ["crossentropy", "proselflc"] and set(robust["n_settings"]) == {2}
    last = df[df["phase"] == "search"].sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    for _, row in robust[robust["n_configs"] > 0].iterrows():
        trials = [item.split(":")[1] for item in row["trial_ids"].split(",")]
        assert len(trials) == 2 and (last.loc[trials, "status"] == "completed").all()
        assert row["score"] == pytest.approx(last.loc[trials, "val_accuracy"].mean())
        assert row["test_accuracy"] == pytest.approx(last.loc[trials, "test_accuracy"].mean())
