"""`proselflc report --select-by` and the Optuna export judge a metric by its better direction in the metric
table (no guessing from the name): changing the table changes which trial they pick."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.study import StudyDirection

from proselflc import metric_table
from proselflc.analysis.optuna_export import export_optuna
from proselflc.analysis.report import build_report
from test_analysis_sweeps import Study, Trial, write_sweep

#: Two full-length trials of one study; by last train_loss the first is lower, the second higher.
LOW = Trial({"optim.lr": 0.1}, {"train_loss": [1.0, 0.2, 0.3, 0.25], "val_accuracy": [0.5, 0.6, 0.7, 0.7]})
HIGH = Trial({"optim.lr": 0.01}, {"train_loss": [0.9, 0.8, 0.7, 0.6], "val_accuracy": [0.5, 0.6, 0.7, 0.8]})


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return write_sweep(tmp_path, [Study("symmetric", 0.4, "crossentropy", [LOW, HIGH])])


def chosen_lr_and_direction(sweep: Path, tmp_path: Path) -> tuple[float, dict[float, float], StudyDirection]:
    """The selected trial's lr, each trial's best train_loss, and the exported Optuna study's direction."""
    report = build_report(sweep, select_by="train_loss")
    best = {row["optim.lr"]: row["best_train_loss"] for _, row in report.trials.iterrows()}
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    [name] = export_optuna(sweep, storage, select_by="train_loss")
    direction = optuna.load_study(study_name=name, storage=storage).direction
    return float(report.best["optim.lr"].iloc[0]), best, direction


def test_a_loss_is_minimised_because_the_table_says_so(sweep: Path, tmp_path: Path) -> None:
    assert metric_table.get("train_loss").better == "min"
    assert chosen_lr_and_direction(sweep, tmp_path) == (0.1, {0.1: 0.2, 0.01: 0.6}, StudyDirection.MINIMIZE)


def test_flipping_the_table_s_direction_flips_the_choice(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tuple(dataclasses.replace(m, better="max") if m.name == "train_loss" else m for m in metric_table.METRICS)
    monkeypatch.setattr(metric_table, "METRICS", table)
    assert chosen_lr_and_direction(sweep, tmp_path) == (0.01, {0.1: 1.0, 0.01: 0.9}, StudyDirection.MAXIMIZE)
