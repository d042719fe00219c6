"""The analysis on the tiny REAL sweep of conftest.py (Ray Tune + Optuna + ASHA on digits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proselflc.analysis import (
    STATUSES,
    best_configs,
    importance,
    load_sweep,
    results_table,
    search_cost,
    summary,
)
from proselflc.cli import main

pytestmark = pytest.mark.ray

METRICS = (
    "epoch",
    "lr",
    "train_loss",
    "val_accuracy",
    "test_accuracy",
    "test_loss",
    "test_entropy",
    "test_max_p",
    "noisy_fit",
    "noisy_corrected",
    "clean_fit",
    "mean_epsilon",
    "samples_per_s",
)


@pytest.fixture(scope="module")
def manifest(tiny_sweep: Path) -> dict:
    return json.loads((tiny_sweep / "manifest.json").read_text())


@pytest.fixture(scope="module")
def df(tiny_sweep: Path) -> pd.DataFrame:
    return load_sweep(tiny_sweep)


def test_every_trial_of_every_study_is_loaded(df: pd.DataFrame, manifest: dict) -> None:
    assert set(METRICS) <= set(df.columns)
    assert set(df["status"]) <= set(STATUSES) - {"pending"}
    trials = df.drop_duplicates(["study", "phase", "trial_id"])
    for entry in manifest["studies"]:
        mine = trials[trials["study"] == entry["study"]]
        assert (mine["phase"] == "search").sum() == 3, entry["study"]
        assert sorted(mine.loc[mine["phase"] == "final", "seed"]) == sorted(manifest["final_seeds"])
    completed = df[df["status"] == "completed"]
    assert completed.groupby(["study", "phase", "trial_id"])["epoch"].max().eq(manifest["max_t"]).all()
    assert df["test_accuracy"].between(0, 1).all()


def test_selection_agrees_with_the_config_tune_re_ran(df: pd.DataFrame, manifest: dict) -> None:
    best = best_configs(df).set_index("study")
    for entry in manifest["studies"]:
        row = best.loc[entry["study"]]
        assert row["final_matches_selection"], entry["study"]
        for key, value in entry["best_params"].items():
            assert row[key] == pytest.approx(value), (entry["study"], key)
        assert row["final_n"] == len(manifest["final_seeds"])
        assert row["gap"] >= 0


def test_table_importance_and_cost_cover_every_study(df: pd.DataFrame) -> None:
    table = results_table(best_configs(df))
    assert list(table.mean.index) == [0.0, 0.4]
    assert list(table.mean.columns) == ["crossentropy", "proselflc"]
    assert table.percent and (table.n.to_numpy() == 2).all()
    assert np.isfinite(table.std.to_numpy()).all()
    imp = importance(df)
    assert set(imp.loc[imp["method"] == "proselflc", "param"]) <= {"loss.exp_base", "optim.lr"}
    assert imp.groupby(["noise_rate", "method"])["importance"].sum().round(6).eq(1.0).all()
    cost = search_cost(df)
    assert (cost["epochs_full"] == 9).all() and (cost["epochs_trained"] <= 9).all()
    assert (cost["final_epochs"] == 6).all()


def test_report_cli_on_the_real_sweep(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tiny_sweep), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "crossentropy" in printed and "proselflc" in printed and "**" in printed
    written = {p.name for p in tmp_path.iterdir()}
    assert {"results.md", "results.csv", "results.tex", "results.xlsx", "results.html"} <= written
    assert {
        "accuracy_vs_noise.png",
        "accuracy_vs_noise.pdf",
        "curves_digits_mlp_symmetric-0.4.png",
        "importance.pdf",
    } <= written
    sheets = pd.read_excel(tmp_path / "results.xlsx", sheet_name=None)
    assert len(sheets["dynamics"]) > 0 and len(sheets["best_configs"]) == 4
    # Two tables (results, memorisation), each a header, a rule and one row per noise rate, and the robust-across-
    # rates row (a header, a rule and one row) under the results: the sweep has two noise rates.
    text = summary(tiny_sweep)
    assert text.count("\n|") == 11 and "robust" in text.lower()
