"""The sweep plan without Ray: each study's lifecycle (pending -> searching -> searched -> finished), the errors a
step in the wrong state gives, the manifest entry it writes, and the recovery after a restore."""

from __future__ import annotations

from typing import Any

import pytest

from proselflc.sweep_contract import Manifest, Status, StudyEntry
from proselflc.tuning.plan import (
    Complete,
    Forget,
    LifecycleError,
    Recovery,
    Replay,
    RestoredTrial,
    SetAside,
    Study,
    SweepPlan,
    new_plan,
)


def plan(keys: tuple[str, ...] = ("a", "b"), **changes: Any) -> SweepPlan:
    options: dict[str, Any] = {
        "metric": "val_accuracy", "mode": "max", "max_t": 3, "final_seeds": [1, 2], "per_study_concurrency": 1,
    }
    options.update(changes)
    return new_plan([(key, True, 2) for key in keys], **options)


def lr(key: str, trial_id: str) -> dict[str, Any]:
    """A stand-in for a study's sampler: a learning rate that names the trial."""
    return {"optim.lr": float(trial_id.strip("tf") or 0) / 10}


def row(value: float, epoch: int = 3) -> dict[str, Any]:
    return {"val_accuracy": value, "epoch": epoch, "training_iteration": epoch}


def test_a_study_goes_through_its_lifecycle_in_order() -> None:
    p = plan(("a",))
    study = p.studies["a"]
    assert study.status == Status.PENDING and not p.finished
    assert p.deal("t1", lr, now=0).phase == "search" and study.status == Status.SEARCHING
    assert p.deal("t2", lr, now=0) is None  # at its per-study cap of one
    assert p.result("t1", row(0.5, 1)) and p.complete("t1", row(0.5)).error is False
    p.deal("t2", lr, now=0)
    p.complete("t2", row(0.7), now=0)
    assert study.status == Status.SEARCHED and study.best_trial == "t2" and study.runner_up == "t1"
    assert p.notes[-1] == "a: best val_accuracy 0.7000 with {'optim.lr': 0.2}"
    finals = [p.deal(f"f{n}", lr, now=0) for n in (1, 2)]
    assert [(d.phase, d.params) for d in finals] == [("final", {"optim.lr": 0.2, "train.seed": s}) for s in (1, 2)]
    assert p.deal("f3", lr, now=0) is None
    p.complete("f1"), p.complete("f2")
    assert study.status == Status.FINISHED and p.finished


def test_a_study_without_a_usable_result_finishes_without_finals_and_the_sampler_hears_a_failure() -> None:
    p = plan(("a",))
    p.deal("t1", lr, now=0), p.complete("t1", None, error=True, now=0)
    p.deal("t2", lr, now=0)
    told = p.complete("t2", {**row(float("nan")), "diverged": True}, now=0)
    assert told.result is None and told.error  # a NaN is told to the sampler as a failed trial
    assert p.studies["a"].status == Status.FINISHED and p.studies["a"].best_params is None
    assert "no search trial reported a usable val_accuracy" in p.notes[-1]


def test_a_repeated_iteration_is_kept_but_not_told_again() -> None:
    p = plan(("a",))
    p.deal("t1", lr, now=0)
    assert p.result("t1", row(0.4, 2))
    assert not p.result("t1", row(0.4, 2))  # a trial restored from its checkpoint reports epoch 2 again
    assert not p.result("t1", row(float("nan"), 3))  # not finite
    assert p.studies["a"].last["t1"]["epoch"] == 3


def test_steps_in_the_wrong_state_raise_clear_errors() -> None:
    study = Study("symmetric-0.4/ce", searchable=True, samples=2)
    with pytest.raises(LifecycleError, match=r"'symmetric-0.4/ce': cannot deal search trial t1 while pending; "
                                             r"only while searching"):
        study.deal_search("t1", {})
    with pytest.raises(LifecycleError, match="cannot deal final trial f1 while pending; only while searched"):
        study.deal_final("f1", [1])
    with pytest.raises(LifecycleError, match="cannot end its search while pending"):
        study.end_search("val_accuracy", "max", 3, has_finals=True)
    study.start(0)
    with pytest.raises(LifecycleError, match="cannot start while searching; only while pending"):
        study.start(0)
    with pytest.raises(LifecycleError, match="cannot complete search trial t9: it was not dealt"):
        study.complete_search("t9", None, error=False)
    with pytest.raises(LifecycleError, match="cannot forget trial t9: it was not dealt"):
        study.forget("t9")
    study.deal_search("t1", {}), study.complete_search("t1", row(0.5), error=False)
    study.end_search("val_accuracy", "max", 3, has_finals=True)
    study.deal_final("f1", [1])
    with pytest.raises(LifecycleError, match="cannot deal final trial f2: every seed is dealt"):
        study.deal_final("f2", [1])


def test_the_manifest_entry_round_trips_through_json() -> None:
    p = plan(("symmetric-0.4/ce",), final_seeds=[7])
    for trial_id, value in (("t1", 0.3), ("t2", 0.6)):
        p.deal(trial_id, lr, now=0), p.complete(trial_id, row(value), now=0)
    p.deal("f1", lr, now=0)
    entry = StudyEntry(study="symmetric-0.4/ce", dataset="d", model="m", noise_kind="symmetric", noise_rate=0.4,
                       method="ce", search_dir="trials")
    p.studies["symmetric-0.4/ce"].to_entry(entry)
    back = Manifest.model_validate_json(Manifest(sweep="s", studies=[entry]).model_dump_json()).studies[0]
    assert back == entry and back.status == Status.SEARCHED and '"status":"searched"' in entry.model_dump_json()
    assert back.trial_order == ["symmetric-0.4_ce_search_t1", "symmetric-0.4_ce_search_t2"]
    assert (back.best_trial, back.runner_up_trial) == ("symmetric-0.4_ce_search_t2", "symmetric-0.4_ce_search_t1")
    assert back.final_trials == ["symmetric-0.4_ce_final_f1"] and back.best_params == {"optim.lr": 0.2}
    with pytest.raises(LifecycleError, match="cannot write into the manifest entry of 'other'"):
        p.studies["symmetric-0.4/ce"].to_entry(entry.model_copy(update={"study": "other"}))


def test_recovery_completes_trials_ray_ended_and_forgets_those_it_never_recorded() -> None:
    p = plan(("a", "b"), per_study_concurrency=2)
    for trial_id in ("t1", "t2", "t3", "t4"):
        p.deal(trial_id, lr, now=0)
    assert {k: sorted(s.in_flight) for k, s in p.studies.items()} == {"a": ["t1", "t3"], "b": ["t2", "t4"]}
    restored = [RestoredTrial("t1", ended=True, last_result=row(0.5)), RestoredTrial("t2"),
                RestoredTrial("t4", ended=True, error=True)]
    recovery = p.recover(restored)
    assert recovery.steps == (Complete(restored[0]), Forget("t3"), Complete(restored[2]))  # per study, plan order
    assert (recovery.complete, recovery.forget) == (["t1", "t4"], ["t3"])
    assert p.recover([RestoredTrial(t) for t in ("t1", "t2", "t3", "t4")]) == Recovery()  # running: nothing to do


def test_recovery_replays_a_finished_trial_whose_results_were_lost_to_the_iteration_it_ended_at() -> None:
    p = plan(("a",))
    p.deal("t1", lr, now=0)
    p.complete("t1", row(0.5, epoch=2), now=0)
    lost = RestoredTrial("t1", ended=True, last_result=row(0.5, epoch=2), dirname="a_search_t1", results_intact=False)
    assert p.recover([lost]).steps == (Replay("t1", "a_search_t1", 2),)
    assert p.recover([lost]).replay == {"t1": 2}
    # Only a finished trial that reported is run again: an errored one is retried by Ray, one that never
    # reported has nothing to reach, a running one continues from its checkpoint.
    for trial in (
        RestoredTrial("t1", ended=True, error=True, last_result=row(0.5, 2), dirname="d", results_intact=False),
        RestoredTrial("t1", ended=True, last_result={}, dirname="d", results_intact=False),
        RestoredTrial("t1", last_result=row(0.5, 2), dirname="d", results_intact=False),
    ):
        assert p.recover([trial]) == Recovery(), trial


def test_recovery_sets_aside_started_directories_no_restored_trial_owns() -> None:
    p = plan(("a",))
    asked = []

    def started(name: str) -> bool:
        asked.append(name)
        return name != "a_search_t8"

    dirs = ["a_search_t9", "a_search_t1", "a_search_t8", "a_search_t7", ".lost", ".orphaned"]
    recovery = p.recover([RestoredTrial("t1", dirname="a_search_t1")], dirs, started)
    assert recovery.steps == (SetAside("a_search_t7"), SetAside("a_search_t9"))
    assert recovery.set_aside == ["a_search_t7", "a_search_t9"]
    assert sorted(asked) == ["a_search_t7", "a_search_t8", "a_search_t9"]  # known and hidden ones are not read


def test_recovery_orders_its_steps_complete_forget_replay_set_aside() -> None:
    """The plan learns a trial's end before a replay clears the result Ray holds for it, and every step is one
    of the plan's: a killed driver that started t3 left its directory, and t1's results were lost."""
    p = plan(("a", "b"), per_study_concurrency=2)
    for trial_id in ("t1", "t2", "t3"):
        p.deal(trial_id, lr, now=0)
    t1 = RestoredTrial("t1", ended=True, last_result=row(0.5), dirname="a_search_t1", results_intact=False)
    t2 = RestoredTrial("t2", dirname="b_search_t2")
    recovery = p.recover([t2, t1], ["a_search_t1", "b_search_t2", "a_search_t3"], lambda name: True)
    assert recovery.steps == (Complete(t1), Forget("t3"), Replay("t1", "a_search_t1", 3), SetAside("a_search_t3"))


def test_an_intact_experiment_needs_no_recovery() -> None:
    p = plan(("a",))
    p.deal("t1", lr, now=0)
    p.complete("t1", row(0.5), now=0)
    p.deal("t2", lr, now=0)
    restored = [
        RestoredTrial("t1", ended=True, last_result=row(0.5), dirname="a_search_t1"),
        RestoredTrial("t2", last_result=row(0.4, 1), dirname="a_search_t2"),
    ]
    assert p.recover(restored, ["a_search_t1", "a_search_t2", ".lost"], lambda name: True) == Recovery()
    assert new_plan([], metric="val_accuracy", mode="max", max_t=3, final_seeds=[], per_study_concurrency=1).recover(
        []
    ) == Recovery()


def test_a_forgotten_trial_is_dealt_again_and_a_forgotten_final_frees_its_seed() -> None:
    p = plan(("a",), per_study_concurrency=2)
    p.deal("t1", lr, now=0), p.deal("t2", lr, now=0)
    study, phase = p.forget("t2")
    assert phase == "search" and study.search_trials == ["t1"] and "t2" not in p.trial_study
    assert "a: search trial t2 was dealt but never started by Ray: dealt again" in p.notes
    assert p.forget("t2") is None  # forgetting twice is harmless
    assert p.deal("t3", lr, now=0).phase == "search"
    p.complete("t1", row(0.5), now=0), p.complete("t3", row(0.6), now=0)
    assert [p.deal(f, lr, now=0).params["train.seed"] for f in ("f1", "f2")] == [1, 2]
    p.forget("f1")
    assert p.deal("f3", lr, now=0).params["train.seed"] == 1
    assert p.complete("never-dealt") is None


def test_a_time_budget_closes_a_search_and_studies_start_within_the_concurrency_limit() -> None:
    p = plan(("a", "b"), time_budget_s=60, max_concurrent_studies=1)
    p.deal("t1", lr, now=1000)
    assert p.deal("t2", lr, now=1000) is None and p.studies["b"].status == Status.PENDING  # one study at a time
    p.complete("t1", row(0.5), now=1061)  # past a's budget: its search ends with one trial
    assert p.studies["a"].status == Status.SEARCHED and len(p.studies["a"].search_trials) == 1
