"""The one-Tuner searcher and scheduler driven directly, as Ray Tune's controller drives them: dealing across
studies, per-study caps, final re-runs as soon as a study's search ends, per-study ASHA rungs, persistence.

These call the real StudySearcher (real Optuna samplers behind Ray Tune's OptunaSearch) and StudyScheduler
(real ASHAScheduler per study) with Ray's own Trial objects, in the order Tune's controller would; the
end-to-end behaviour on a live Ray is in test_tuning.py."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher

from proselflc import ray_compat
from proselflc.tuning.plan import Complete, Forget, Recovery, RestoredTrial
from proselflc.tuning.studies import StudyPlan, StudyScheduler, StudySearcher

LR = {"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)}


def searcher(keys: list[str], **changes: Any) -> StudySearcher:
    options: dict[str, Any] = {
        "metric": "val_accuracy",
        "mode": "max",
        "max_t": 3,
        "num_samples": 3,
        "final_seeds": [1, 2],
        "sampler": lambda plan: optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
        "per_study_concurrency": 1,
    }
    options.update(changes)
    return StudySearcher([StudyPlan(key, dict(LR)) for key in keys], **options)


def finish(s: StudySearcher, trial_id: str, value: float, epoch: int = 3) -> None:
    s.on_trial_result(trial_id, {"val_accuracy": value, "epoch": epoch, "training_iteration": epoch})
    s.on_trial_complete(trial_id, {"val_accuracy": value, "epoch": epoch, "training_iteration": epoch})


def test_trials_are_dealt_across_studies_and_capped_per_study() -> None:
    s = searcher(["a", "b"])
    first, second = s.suggest("t1"), s.suggest("t2")
    assert (first["study"], second["study"]) == ("a", "b")  # the cap of 1 sends the second trial to study b
    assert first["phase"] == second["phase"] == "search" and set(first) == {"study", "phase", "optim.lr"}
    assert s.suggest("t3") is None  # both studies at their cap: nothing until a result arrives
    finish(s, "t1", 0.5)
    assert s.suggest("t3")["study"] == "a"


def test_one_study_at_a_time_runs_searches_and_final_runs_in_order() -> None:
    s = searcher(["a", "b"], max_concurrent_studies=1)
    order = []
    for n in range(10):
        config = s.suggest(f"t{n}")
        assert config not in (None, Searcher.FINISHED)
        order.append((config["study"], config["phase"]))
        finish(s, f"t{n}", 0.1 * n)
    assert order == [("a", "search")] * 3 + [("a", "final")] * 2 + [("b", "search")] * 3 + [("b", "final")] * 2
    assert s.suggest("t10") == Searcher.FINISHED
    assert [s.studies[k].status for k in "ab"] == ["finished", "finished"]


def test_final_runs_start_as_soon_as_a_study_search_ends_with_the_selected_config() -> None:
    s = searcher(["a", "b"], per_study_concurrency=3)
    configs = {f"t{n}": s.suggest(f"t{n}") for n in range(6)}
    study_a = [t for t, c in configs.items() if c["study"] == "a"]
    assert len(study_a) == 3
    for trial_id, value in zip(study_a, [0.2, 0.9, 0.4]):  # its second trial is its best
        finish(s, trial_id, value)
    assert s.studies["a"].status == "searched" and s.studies["b"].status == "searching"
    best = configs[study_a[1]]
    assert s.studies["a"].best_params == {"optim.lr": best["optim.lr"]}
    final = s.suggest("f1")  # b's trials are still out: a's re-runs go first
    assert final == {"study": "a", "phase": "final", "optim.lr": best["optim.lr"], "train.seed": 1}
    assert s.suggest("f2")["train.seed"] == 2


def test_ties_go_to_the_trial_created_first_and_stopped_trials_only_when_none_ran_full_length() -> None:
    s = searcher(["a"], per_study_concurrency=3)
    configs = [s.suggest(f"t{n}") for n in range(3)]
    finish(s, "t0", 0.99, epoch=1)  # stopped early by ASHA
    finish(s, "t1", 0.7)
    finish(s, "t2", 0.7)
    assert s.studies["a"].best_trial == "t1"
    assert s.studies["a"].best_params == {"optim.lr": configs[1]["optim.lr"]}


def test_a_study_whose_trials_all_errored_finishes_without_final_runs() -> None:
    s = searcher(["a"], per_study_concurrency=3, num_samples=2)
    s.suggest("t0"), s.suggest("t1")
    s.on_trial_complete("t0", None, error=True)
    s.on_trial_complete("t1", {"val_accuracy": float("nan"), "epoch": 2, "diverged": True}, error=False)
    assert s.studies["a"].status == "finished" and s.studies["a"].best_params is None
    assert "no search trial reported a usable val_accuracy" in s.notes[-1]
    assert s.suggest("t2") == Searcher.FINISHED


def test_a_time_budget_closes_a_study_search(monkeypatch: pytest.MonkeyPatch) -> None:
    from proselflc.tuning import plan

    clock = [1000.0]
    monkeypatch.setattr(plan.time, "time", lambda: clock[0])
    s = searcher(["a"], num_samples=10, time_budget_s=60)
    s.suggest("t0")
    clock[0] += 61
    finish(s, "t0", 0.5)
    assert s.studies["a"].status == "searched" and len(s.studies["a"].search_trials) == 1


def test_the_searcher_state_survives_save_and_restore(tmp_path: Path) -> None:
    s = searcher(["a", "b"])
    s.suggest("t1"), s.suggest("t2")
    finish(s, "t1", 0.5)
    s.save(str(tmp_path / "state.pkl"))
    fresh = searcher(["a", "b"])
    fresh.restore(str(tmp_path / "state.pkl"))
    assert fresh.studies["a"].search_done == {"t1"} and fresh.studies["b"].in_flight == {"t2"}
    assert fresh.dirname("t2") == "b_search_t2"
    # Each study's sampler is restored too: it goes on from the same state as the original.
    assert fresh.suggest("t3") == s.suggest("t3")
    pickle.dumps(fresh)


def test_trials_dealt_but_never_recorded_by_ray_are_dealt_again_with_the_same_seed() -> None:
    """What a resume in a Ray session that restored a newer searcher than its experiment state relies on."""
    s = searcher(["a"], per_study_concurrency=2)
    s.suggest("t1"), s.suggest("t2")
    s.forget("t2")  # dealt, never started: the study deals a search trial in its place
    optuna_trial = ray_compat.optuna_study(s.samplers["a"]).trials[1]
    assert optuna_trial.state == optuna.trial.TrialState.FAIL  # not left RUNNING in the sampler's history
    assert s.suggest("t3")["phase"] == "search" and s.studies["a"].search_trials == ["t1", "t3"]
    for trial_id, value in [("t1", 0.5), ("t3", 0.7)]:
        finish(s, trial_id, value)
    assert s.suggest("t4")["phase"] == "search"
    finish(s, "t4", 0.1)
    assert s.suggest("f1")["train.seed"] == 1 and s.suggest("f2")["train.seed"] == 2
    s.forget("f1")
    assert s.studies["a"].in_flight == {"f2"}
    assert s.suggest("f3")["train.seed"] == 1  # seed 1 again, not a second seed 2
    finish(s, "f2", 0.7), finish(s, "f3", 0.7)
    assert s.studies["a"].status == "finished" and s.suggest("x") == Searcher.FINISHED
    assert any("final trial f1 was dealt but never started" in note for note in s.notes)


def test_a_recovery_step_applied_to_the_searcher_reaches_the_plan_and_the_sampler() -> None:
    """A trial Ray restored as finished that the plan had in flight is completed, its result told to its sampler;
    one Ray never recorded is forgotten, its sampler's trial failed."""
    s = searcher(["a"], per_study_concurrency=2)
    s.suggest("t1"), s.suggest("t2")
    row = {"val_accuracy": 0.5, "epoch": 3, "training_iteration": 3}
    recovery = s.plan.recover([RestoredTrial("t1", ended=True, last_result=row)])
    assert recovery.steps == (Complete(RestoredTrial("t1", ended=True, last_result=row)), Forget("t2"))
    for step in recovery.steps:
        s.apply(step)
    assert s.studies["a"].in_flight == set() and s.studies["a"].search_done == {"t1"}
    states = [t.state for t in ray_compat.optuna_study(s.samplers["a"]).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]


def test_a_restored_trial_repeating_its_reported_epochs_is_told_to_optuna_once(tmp_path: Path) -> None:
    """After a restore from a checkpoint a trial reports again the epochs after it; Optuna keeps one value per step
    (a repeat would only warn) and sees the later ones as usual."""
    import warnings

    s = searcher(["a"])
    s.suggest("t1")
    row = lambda epoch, value: {"val_accuracy": value, "epoch": epoch, "training_iteration": epoch}
    s.on_trial_result("t1", row(1, 0.3))
    s.on_trial_result("t1", row(2, 0.4))
    s.save(str(tmp_path / "state.pkl"))
    restored = searcher(["a"])
    restored.restore(str(tmp_path / "state.pkl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's "this step is already reported" would raise here
        restored.on_trial_result("t1", row(2, 0.4))
        restored.on_trial_result("t1", row(3, 0.5))
    (trial,) = ray_compat.optuna_study(restored.samplers["a"]).trials
    assert trial.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}
    assert restored.studies["a"].last["t1"]["epoch"] == 3


def make_trial(study: str, phase: str = "search") -> Trial:
    return Trial("train", config={"study": study, "phase": phase}, stub=True)


def test_each_study_has_its_own_asha_rungs_and_final_runs_are_never_stopped() -> None:
    asha = functools.partial(ASHAScheduler, time_attr="epoch", metric="val_accuracy", mode="max", max_t=4,
                             grace_period=1, reduction_factor=2, brackets=1)
    scheduler = StudyScheduler(metric="val_accuracy", mode="max", make=asha)
    high = [make_trial("symmetric-0/ce") for _ in range(3)]
    low = [make_trial("symmetric-0.6/ce") for _ in range(3)]
    final = make_trial("symmetric-0.6/ce", "final")
    for trial in [*high, *low, final]:
        scheduler.on_trial_add(None, trial)

    def report(trial: Trial, value: float) -> str:
        return scheduler.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": value, "training_iteration": 1})

    assert [report(t, 0.9 + 0.01 * i) for i, t in enumerate(high)] == [TrialScheduler.CONTINUE] * 3
    # Far below every 0%-noise value, yet the 60%-noise study's first trial is judged against its own rung only.
    assert report(low[0], 0.10) == TrialScheduler.CONTINUE
    assert report(low[1], 0.12) == TrialScheduler.CONTINUE
    assert report(low[2], 0.01) == TrialScheduler.STOP  # below its own study's rung cut-off
    assert report(final, 0.0) == TrialScheduler.CONTINUE
    assert set(scheduler.studies) == {"symmetric-0/ce", "symmetric-0.6/ce"}


def test_a_plan_with_its_own_trial_count_overrides_num_samples() -> None:
    s = StudySearcher(
        [StudyPlan("grid", dict(LR), num_samples=2), StudyPlan("rest", dict(LR)), StudyPlan("fixed", {})],
        metric="val_accuracy", mode="max", max_t=3, num_samples=4, final_seeds=[],
        sampler=lambda plan: optuna.samplers.RandomSampler(seed=0), per_study_concurrency=4,
    )
    assert [s.studies[k].samples for k in ("grid", "rest", "fixed")] == [2, 4, 1]
    dealt = [s.suggest(f"t{n}")["study"] for n in range(7)]
    assert sorted(dealt) == ["fixed"] + ["grid"] * 2 + ["rest"] * 4
    assert s.suggest("t7") is None  # every study's trials are dealt; they are still in flight


def test_median_stopping_per_study_and_no_scheduler_at_all() -> None:
    median = functools.partial(MedianStoppingRule, time_attr="epoch", metric="val_accuracy", mode="max",
                               grace_period=1, min_samples_required=2, min_time_slice=float("inf"))
    scheduler = StudyScheduler(metric="val_accuracy", mode="max", make=median, name="median")
    good = [make_trial("a") for _ in range(2)]
    other = make_trial("b")
    bad = make_trial("a")
    for trial in [*good, other, bad]:
        scheduler.on_trial_add(None, trial)

    def report(trial: Trial, epoch: int, value: float) -> str:
        return scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_accuracy": value, "training_iteration": epoch})

    for epoch in (1, 2):
        assert [report(t, epoch, 0.9) for t in good] == [TrialScheduler.CONTINUE] * 2
    assert report(other, 1, 0.05) == TrialScheduler.CONTINUE  # study b has no other trial: not judged against a
    assert report(bad, 2, 0.10) == TrialScheduler.STOP  # below the median of its own study's trials
    assert scheduler.debug_string() == "Per-study median for 2 studies"

    fifo = StudyScheduler(metric="val_accuracy", mode="max", make=None, name="fifo")
    trial = make_trial("a")
    fifo.on_trial_add(None, trial)
    assert fifo.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": 0.0}) == TrialScheduler.CONTINUE
    assert fifo.studies == {}


def test_a_state_of_another_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from proselflc.errors import ConfigError

    s = searcher(["a"])
    s.state.version = 3
    s.save(str(tmp_path / "newer.pkl"))
    with pytest.raises(ConfigError, match="has version 3, and this proselflc reads version 2: .* a later one needs "
                                          "the proselflc that wrote it"):
        searcher(["a"]).restore(str(tmp_path / "newer.pkl"))
    with open(tmp_path / "earlier.pkl", "wb") as handle:
        pickle.dump({"studies": {}, "trial_study": {}}, handle)  # an earlier proselflc's pickled __dict__
    with pytest.raises(ConfigError, match="has version 1 or unknown.*rewritten by `proselflc migrate <sweep dir>`"):
        searcher(["a"]).restore(str(tmp_path / "earlier.pkl"))


def _behind_rays_limiter(per_study: int) -> tuple[StudySearcher, Any]:
    """A searcher as Tune wraps it for `max_concurrent_trials=1`: SearchGenerator(ConcurrencyLimiter(searcher))."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.search_generator import SearchGenerator

    s = searcher(["a"], per_study_concurrency=per_study)
    return s, SearchGenerator(ConcurrencyLimiter(s, max_concurrent=1))


def test_a_restored_search_state_newer_than_its_trials_deals_again_within_the_sweeps_trial_limit(
    tmp_path: Path,
) -> None:
    """After a resume that failed, Ray restores the search state from its staging directory, newer than the
    experiment state: it holds a trial the experiment never recorded. When Ray's ConcurrencyLimiter kept its own
    count, it still counted that trial as running, dealt nothing, and the next resume waited for a trial forever.
    The plan keeps the one count: forgetting the trial frees its place."""
    _, generator = _behind_rays_limiter(per_study=2)
    assert generator.searcher.suggest("t1")["phase"] == "search"
    assert generator.searcher.suggest("t2") is None  # the sweep's limit of one, not the study's of two
    generator.save_to_dir(str(tmp_path), session_str="failed-resume")
    restored, restored_generator = _behind_rays_limiter(per_study=2)
    restored_generator.restore_from_dir(str(tmp_path))
    assert restored.studies["a"].in_flight == {"t1"}
    assert restored.plan.recover([]) == Recovery(steps=(Forget("t1"),))  # the experiment holds no trial
    restored.apply(Forget("t1"))
    assert restored_generator.searcher.suggest("t3")["phase"] == "search"
    assert restored_generator.searcher.suggest("t4") is None  # the limit holds after the restore
    restored_generator.on_trial_complete("t3", {"val_accuracy": 0.5, "epoch": 3, "training_iteration": 3})
    assert restored_generator.searcher.suggest("t4")["phase"] == "search"  # a completion reaches the plan


