"""The memorisation signal without clean labels: prediction_changes, counted by hand, and its first smoothed minimum
(the onset) falling before memorisation shows in noisy_fit."""

from __future__ import annotations

import math

import pytest

from proselflc import metric_table
from proselflc.config import build_run_config
from proselflc.memorisation import memorisation_onset, onset_of
from proselflc.training import Engine


def _raw(**train: object) -> dict:
    return {
        "name": "signal",
        "data": {"name": "digits", "val_fraction": 0.15, "limit": 300},
        "noise": {"kind": "symmetric", "rate": 0.4},
        "model": {"name": "mlp", "hidden": 32},
        "loss": {"name": "crossentropy"},
        "optim": {"lr": 0.1, "schedule": "constant"},
        "train": {"epochs": 3, "batch_size": 64, "seed": 1, "progress": False, "threads": 1, **train},
    }


def test_prediction_changes_match_a_hand_count_of_the_training_forward_passes() -> None:
    engine = Engine(build_run_config(_raw()))
    orders, predictions = [], []
    epoch_order = engine._epoch_order
    engine._epoch_order = lambda: orders.append(epoch_order()) or orders[-1]
    engine.model.register_forward_hook(
        lambda module, args, out: predictions.append(out.argmax(1).tolist()) if module.training else None)
    rows = engine.run()

    last: dict[int, int] = {}
    expected = []
    per_epoch = engine.batches_per_epoch
    for epoch, order in enumerate(orders):
        changed = compared = 0
        for b in range(per_epoch):
            index = order[b * 64 : (b + 1) * 64].tolist()
            for i, p in zip(index, predictions[epoch * per_epoch + b], strict=True):
                if i in last:
                    compared += 1
                    changed += last[i] != p
                last[i] = p
        expected.append(changed / compared if compared else 1.0)
    assert len(predictions) == 3 * per_epoch
    assert [r["prediction_changes"] for r in rows] == expected
    assert expected[0] == 1.0 and 0 < expected[1] < 1  # epoch 1: every prediction is new


def test_the_metric_table_lists_it_as_a_no_clean_label_diagnostic() -> None:
    row = metric_table.get("prediction_changes")
    assert row is not None and not row.clean_labels and row.better is None
    assert "prediction_changes" not in metric_table.selectable_metrics()


def test_onset_is_the_first_minimum_of_the_smoothed_curve() -> None:
    # Smoothed (centred, window 3): 0.7, 0.5667, 0.3667, 0.2333, 0.2, 0.2333, 0.3, 0.35, 0.375: minimum at epoch 5.
    changes = [0.9, 0.5, 0.3, 0.3, 0.1, 0.2, 0.4, 0.3, 0.35, 0.4]
    assert memorisation_onset(range(1, 11), changes) == 5
    # A dip that the next `patience` values undercut is not the minimum; a curve that never turns up has none.
    assert memorisation_onset(range(1, 8), [0.9, 0.6, 0.62, 0.5, 0.3, 0.2, 0.1]) is None
    assert memorisation_onset([1, 2], [1.0, 0.5]) is None
    assert onset_of([{"epoch": e, "prediction_changes": c} for e, c in enumerate(changes, 1)]) == 5
    assert memorisation_onset([1, 2, 3, 4, 5], [1.0, math.nan, 0.2, 0.1, 0.3]) == 4


@pytest.mark.parametrize("rate", [0.6])
def test_its_minimum_falls_before_noisy_fit_climbs_in_the_memorisation_regime(rate: float) -> None:
    """Digits, MLP-512, no weight decay, a high constant lr, heavy symmetric noise, cross entropy: memorisation."""
    raw = _raw(epochs=24)
    raw.update(data={"name": "digits", "val_fraction": 0.15}, noise={"kind": "symmetric", "rate": rate},
               model={"name": "mlp", "hidden": 512}, optim={"lr": 0.2, "momentum": 0.9, "weight_decay": 0.0,
                                                            "schedule": "constant"})
    raw["train"]["seed"] = 0
    rows = Engine(build_run_config(raw)).run()
    onset = onset_of(rows)
    fits = [r["noisy_fit"] for r in rows]
    # Memorisation visibly under way: noisy_fit 5 points above its lowest value so far.
    climb = next(r["epoch"] for i, r in enumerate(rows) if r["noisy_fit"] > min(fits[: i + 1]) + 0.05)
    assert onset is not None and onset < climb, (onset, climb, fits)
    assert fits[-1] > fits[onset - 1] + 0.2  # and it does memorise after the onset


def _trial(trial: str, phase: str, seed: int, val_last: float) -> list[dict]:
    """8 epochs; prediction_changes smoothed minimum at epoch 4; test accuracy 0.1 * epoch (+ 0.01 * seed)."""
    changes = [1.0, 0.5, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    return [{"sweep": "hand", "dataset": "digits", "model": "mlp", "noise_kind": "symmetric", "noise_rate": 0.6,
             "method": "ce", "study": "symmetric-0.6/ce", "phase": phase, "trial_id": trial, "status": "completed",
             "max_epochs": 8, "seed": seed, "train.seed": seed, "optim.lr": 0.1 if trial in ("t1", "f1", "f2") else 0.2,
             "epoch": e, "val_accuracy": val_last if e == 8 else 0.5, "test_accuracy": 0.1 * e + 0.01 * seed,
             "noisy_fit": 0.05 * e, "noisy_corrected": 0.1, "prediction_changes": c}
            for e, c in enumerate(changes, 1)]


def test_selection_epoch_memorisation_onset_reports_the_chosen_trial_at_its_onset() -> None:
    import pandas as pd

    from proselflc.analysis import best_configs
    from proselflc.sweep_contract import reported_row

    df = pd.DataFrame([*_trial("t1", "search", 0, 0.7), *_trial("t2", "search", 0, 0.6),
                       *_trial("f1", "final", 1, 0.5), *_trial("f2", "final", 2, 0.5)])
    assert reported_row(_trial("t1", "search", 0, 0.7), "memorisation_onset")["epoch"] == 4
    last = best_configs(df).iloc[0]
    assert (last["trial_id"], last["selected_epoch"], last["selection_epoch"]) == ("t1", 8, "last")
    assert last["test_accuracy"] == pytest.approx(0.8) and last["final_mean"] == pytest.approx(0.815)
    df.attrs["selection_epoch"] = "memorisation_onset"  # what a sweep with selection.epoch: memorisation_onset loads
    onset = best_configs(df).iloc[0]
    assert (onset["trial_id"], onset["selected_epoch"], onset["end_epoch"]) == ("t1", 4, 8)  # same choice
    assert onset["test_accuracy"] == pytest.approx(0.4) and onset["noisy_fit"] == pytest.approx(0.2)
    assert onset["final_mean"] == pytest.approx(0.415)  # the final re-runs at their own onsets


def test_a_sweep_file_names_the_selection_epoch_or_is_refused() -> None:
    from conftest import TINY_SWEEP
    from proselflc.errors import ConfigError
    from proselflc.tuning import build_sweep_config

    assert build_sweep_config(TINY_SWEEP).selection.epoch == "last"
    assert build_sweep_config({**TINY_SWEEP, "selection": {"epoch": "memorisation_onset"}}).selection.epoch \
        == "memorisation_onset"
    with pytest.raises(ConfigError, match=r"selection\.epoch"):
        build_sweep_config({**TINY_SWEEP, "selection": {"epoch": "best"}})
