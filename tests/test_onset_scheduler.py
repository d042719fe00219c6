"""`scheduler: {name: asha, grace: onset}`: ASHA places no rung before the study's estimated memorisation onset."""

from __future__ import annotations

from typing import Any

import pytest
from ray.tune.experiment import Trial
from tests.scripted_trials import CHANGES, scripted_trial
from tests.sweep_files import study_trials

from proselflc.memorisation import memorisation_onset
from proselflc.tuning import build_sweep_config, run_sweep
from proselflc.tuning.onset_asha import OnsetASHAScheduler

ONSET = 6


def test_the_scripted_curve_has_its_onset_at_epoch_6() -> None:
    assert memorisation_onset(range(1, 13), CHANGES) == ONSET


def test_rungs_move_to_the_onset_once_a_full_length_trial_ends() -> None:
    scheduler = OnsetASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=12, grace_period=1,
                                   reduction_factor=2)
    first, second = Trial("t", trial_id="a", stub=True), Trial("t", trial_id="b", stub=True)
    for trial in (first, second):
        scheduler.on_trial_add(None, trial)
    for epoch, changes in enumerate(CHANGES, 1):
        result = {"epoch": epoch, "val_accuracy": 0.9, "prediction_changes": changes}
        assert scheduler.on_trial_result(None, first, result) == ("STOP" if epoch == 12 else "CONTINUE")
        if epoch <= 3:  # a trial running beside the first is not judged before the onset is known
            assert scheduler.on_trial_result(None, second, {**result, "val_accuracy": 0.1}) == "CONTINUE"
    scheduler.on_trial_complete(None, first, result)
    assert (scheduler.onset, scheduler.first_rung) == (ONSET, ONSET)
    assert scheduler.on_trial_result(None, second, {"epoch": 5, "val_accuracy": 0.1, "prediction_changes": 0.3}) \
        == "CONTINUE"
    assert scheduler.on_trial_result(None, second, {"epoch": 6, "val_accuracy": 0.1, "prediction_changes": 0.3}) \
        == "STOP"  # below the first trial's value recorded at the new rung


def test_onset_factor_puts_the_first_rung_at_that_multiple_of_the_onset() -> None:
    scheduler = OnsetASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=12, grace_period=1,
                                   reduction_factor=2, onset_factor=1.5)
    first, second = Trial("t", trial_id="a", stub=True), Trial("t", trial_id="b", stub=True)
    for trial in (first, second):
        scheduler.on_trial_add(None, trial)
    for epoch, changes in enumerate(CHANGES, 1):
        result = {"epoch": epoch, "val_accuracy": 0.9, "prediction_changes": changes}
        scheduler.on_trial_result(None, first, result)
    scheduler.on_trial_complete(None, first, result)
    assert (scheduler.onset, scheduler.first_rung) == (ONSET, 9)  # ceil(6 x 1.5)
    for epoch in range(1, 9):  # past the onset, before onset x 1.5: not judged
        assert scheduler.on_trial_result(None, second, {"epoch": epoch, "val_accuracy": 0.1}) == "CONTINUE"
    assert scheduler.on_trial_result(None, second, {"epoch": 9, "val_accuracy": 0.1}) == "STOP"


def test_a_noisy_sweep_without_early_stopping_settings_gets_asha_after_three_times_the_onset() -> None:
    from conftest import TINY_SWEEP

    def tiny_raw(rates: list[float], **early_stopping: Any) -> dict[str, Any]:
        raw = {k: v for k, v in TINY_SWEEP.items() if k != "scheduler"}
        return {**raw, "noise": {"kind": "symmetric", "rates": rates}, **early_stopping}

    noisy = build_sweep_config(tiny_raw(rates=[0.0, 0.4]))
    assert (noisy.scheduler_spec.grace, noisy.scheduler_spec.onset_factor) == ("onset", 3.0)
    clean = build_sweep_config(tiny_raw(rates=[0.0]))
    assert (clean.scheduler_spec.grace, clean.scheduler_spec.grace_period) == ("fixed", 1)
    chosen = build_sweep_config(tiny_raw(rates=[0.4], scheduler={"name": "asha", "grace_period": 2}))
    assert (chosen.scheduler_spec.grace, chosen.scheduler_spec.grace_period) == ("fixed", 2)
    assert build_sweep_config(tiny_raw(rates=[0.4], scheduler={"name": "fifo"})).scheduler_spec.name == "fifo"
    # sweep.yaml (what --resume reloads) records the scheduler in force, the default too: a later default
    # cannot change a resumed sweep
    for sweep in (noisy, clean):
        recorded = sweep.resolved(sweep.spaces)
        assert recorded["scheduler"] == sweep.scheduler_spec.model_dump(mode="json")
        assert build_sweep_config(recorded).scheduler_spec == sweep.scheduler_spec


@pytest.mark.ray
def test_no_trial_is_stopped_before_the_onset_on_the_shared_ray(ray_session: Any, tmp_path: Any) -> None:
    sweep = build_sweep_config({
        "name": "onset",
        "base": {"data": {"name": "digits", "limit": 200}, "model": {"name": "mlp", "hidden": 8},
                 "optim": {"schedule": "constant"}, "train": {"epochs": 12, "batch_size": 64, "seed": 0}},
        "noise": {"kind": "symmetric", "rates": [0.6]},
        "methods": {"crossentropy": {"search": {"optim.lr": {"type": "choice", "values": [0.2, 0.05, 0.1, 0.3]}}}},
        "num_samples": 4,
        "searcher": {"name": "grid", "seed": 0},
        "scheduler": {"name": "asha", "grace": "onset", "reduction_factor": 2},
        "resources": {"cpu": 1, "gpu": 0},
        "per_study_concurrency": 1,
        "final_seeds": 0,
        "checkpoint_every": 0,
        "max_failures": 0,
        "storage_path": str(tmp_path),
    })
    trials = study_trials(run_sweep(sweep, trial_function=scripted_trial), "symmetric-0.6/crossentropy")
    epochs = sorted(max(row["epoch"] for row in rows) for _, rows in trials)
    assert len(epochs) == 4 and epochs[-1] == 12  # the first trial ran to full length
    stopped = [e for e in epochs if e < 12]
    assert stopped and all(e == ONSET for e in stopped), epochs  # cuts happen, none before the onset
