"""The metric table is the one definition of a metric: the Engine's rows, its diverged row, the selection
guard and the tune metric check follow it (a metric added to the table in a test changes them)."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest

from proselflc import metric_table, sweep_contract
from proselflc.analysis.select import check_select_by, selection_mode
from proselflc.config import ConfigError, build_run_config
from proselflc.metric_table import Metric
from proselflc.training import METRIC_KEYS, Engine
from proselflc.tuning import build_sweep_config

TINY = {
    "name": "tiny",
    "data": {"limit": 300},
    "noise": {"kind": "symmetric", "rate": 0.4},
    "model": {"name": "mlp", "hidden": 16},
    "loss": {"name": "crossentropy"},
    "train": {"epochs": 2, "batch_size": 64, "seed": 3, "progress": False, "threads": 1},
}
#: A run whose loss becomes NaN/inf in its first epochs (as in test_training's divergence test).
DIVERGING = {**TINY, "optim": {"lr": 1e6, "warmup_epochs": 0, "momentum": 0.99}, "train": {**TINY["train"], "epochs": 4}}
EXTRA = Metric("extra_diagnostic", "a metric only this test knows", clean_labels=True, better="min", if_diverged=-1.0)


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN (unknown values are NaN in both rows)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.fixture
def extended(monkeypatch: pytest.MonkeyPatch) -> tuple[Metric, ...]:
    """The table with one more metric, for as long as a test runs."""
    table = (*metric_table.METRICS, EXTRA)
    monkeypatch.setattr(metric_table, "METRICS", table)
    return table


def test_the_engine_reports_exactly_the_table_s_metrics_in_rows_and_metrics_csv(tmp_path: Path) -> None:
    history = Engine(build_run_config(TINY), run_dir=tmp_path).run()
    assert METRIC_KEYS == metric_table.names()
    assert [set(row) for row in history] == [set(metric_table.names())] * 2
    with open(tmp_path / "metrics.csv") as fh:
        assert tuple(next(csv.reader(fh))) == metric_table.names()


def test_a_diverged_epoch_reports_the_table_s_values_for_what_it_could_not_evaluate() -> None:
    row = Engine(build_run_config(DIVERGING)).run()[-1]
    assert row["diverged"] is True and set(row) == set(metric_table.names())
    expected = metric_table.diverged_values()
    assert expected["val_accuracy"] == 0.0 and math.isnan(expected["test_loss"])
    assert all(same(row[name], value) for name, value in expected.items())
    measured = {m.name for m in metric_table.METRICS if m.if_diverged is None}
    assert measured == {"epoch", "lr", "train_loss", "measured_noise_rate", "mean_epsilon", "samples_per_s",
                        "prediction_changes", "diverged"}
    assert not math.isfinite(row["train_loss"]), "a training measurement is reported as measured"


def test_the_diverged_row_follows_a_metric_added_to_the_table(extended: tuple[Metric, ...]) -> None:
    row = Engine(build_run_config(DIVERGING)).run()[-1]
    assert row["diverged"] is True and row[EXTRA.name] == -1.0


def test_the_selection_guard_and_lists_follow_the_table(extended: tuple[Metric, ...]) -> None:
    assert sweep_contract.CLEAN_LABEL_METRICS == tuple(m.name for m in metric_table.METRICS[:-1] if m.clean_labels)
    assert sweep_contract.SELECTABLE_METRICS == ("train_loss", "val_accuracy")
    assert not sweep_contract.uses_clean_labels("val_accuracy")
    assert sweep_contract.uses_clean_labels(EXTRA.name), "the guard reads the table, not a copy of it"
    assert EXTRA.name in metric_table.clean_label_metrics() and EXTRA.name not in metric_table.selectable_metrics()
    frame = pd.DataFrame({EXTRA.name: [0.5], "val_accuracy": [0.5]})
    with pytest.raises(ValueError, match="computed with clean labels"):
        check_select_by(frame, EXTRA.name)
    check_select_by(frame, "val_accuracy")


def test_a_name_outside_the_table_counts_as_clean_when_it_measures_the_test_set() -> None:
    assert sweep_contract.uses_clean_labels("test_top5") and not sweep_contract.uses_clean_labels("val_top5")


@pytest.mark.parametrize("metric", metric_table.names())
def test_tune_accepts_exactly_the_selectable_metrics_of_the_table(metric: str) -> None:
    sweep = {
        "name": "s",
        "base": {"model": {"name": "mlp"}, "train": {"epochs": 2}},
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"crossentropy": {}},
        "metric": metric,
    }
    row = metric_table.get(metric)
    if not row.clean_labels and row.better is not None:
        assert build_sweep_config(sweep).metric == metric
        return
    why = "clean labels" if row.clean_labels else "no better direction"
    with pytest.raises(ConfigError, match=f"metric {metric!r} .*{why}.*val_accuracy"):
        build_sweep_config(sweep)


def test_the_report_s_default_direction_comes_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"val_accuracy": [0.5], "train_loss": [1.0], "val_loss": [1.0], "lr": [0.1]})
    frame.attrs.update(metric="val_accuracy", mode="max")
    assert selection_mode(frame, "val_accuracy") == "max"  # the sweep's own metric: the sweep's own mode
    assert selection_mode(frame, "train_loss") == "min"
    assert selection_mode(frame, "train_loss", "min") == "min"  # an explicit mode that agrees with the table
    with pytest.raises(ValueError, match="would select the worst configuration"):
        selection_mode(frame, "train_loss", "max")  # one against the table is refused, as `tune` refuses it
    with pytest.raises(ValueError, match="'val_loss' is not in the metric table; pass the mode"):
        selection_mode(frame, "val_loss")
    with pytest.raises(ValueError, match="'lr' has no better direction"):
        selection_mode(frame, "lr")
    table = tuple(dataclasses.replace(m, better="max") if m.name == "train_loss" else m for m in metric_table.METRICS)
    monkeypatch.setattr(metric_table, "METRICS", (*table, Metric("val_loss", "held-out loss", better="min")))
    assert selection_mode(frame, "train_loss") == "max"
    assert selection_mode(frame, "val_loss") == "min"


def test_the_table_module_imports_nothing_heavy() -> None:
    """The sweep contract and the analysis load it where torch or Ray may be missing."""
    import ast

    tree = ast.parse(Path(metric_table.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses", "typing"}, imported
