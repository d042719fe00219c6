"""Writes state.pkl (a StudySearcher's saved state as proselflc wrote it before `SearcherState`: a pickled
`__dict__`) and expected.json (what that searcher did next). Run with the code of commit d3e7727; kept to say how
the fixture was made, not to be run again (today's code writes version 2)."""

import functools
import json
import sys
from pathlib import Path

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from proselflc.tuning.studies import StudyPlan, StudyScheduler, StudySearcher

HERE = Path(__file__).parent
LR = {"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)}


def row(value: float, epoch: int = 3) -> dict:
    return {"val_accuracy": value, "epoch": epoch, "training_iteration": epoch}


def main() -> None:
    s = StudySearcher(
        [StudyPlan("symmetric-0.2/ce", dict(LR)), StudyPlan("symmetric-0.2/fixed", {}),
         StudyPlan("symmetric-0.4/ce", dict(LR))],
        metric="val_accuracy", mode="max", max_t=3, num_samples=2, final_seeds=[1, 2],
        sampler=lambda plan: optuna.samplers.TPESampler(seed=0, n_startup_trials=1), per_study_concurrency=1,
        max_concurrent_studies=2,
    )
    asha = functools.partial(ASHAScheduler, time_attr="epoch", metric="val_accuracy", mode="max", max_t=3,
                             grace_period=1, reduction_factor=2, brackets=1)
    scheduler = StudyScheduler(metric="val_accuracy", mode="max", make=asha, searcher=s)
    trials = {}
    for tid in ("t1", "t2"):
        config = s.suggest(tid)
        trial = Trial("train", config=config, stub=True, trial_id=tid)
        trials[tid] = trial
        scheduler.on_trial_add(None, trial)
    s.on_trial_result("t1", row(0.5, 1)), s.on_trial_result("t1", row(0.6))
    s.on_trial_complete("t1", row(0.6))
    scheduler.on_trial_complete(None, trials["t1"], row(0.6))
    trials["t3"] = Trial("train", config=s.suggest("t3"), stub=True, trial_id="t3")  # the first study's 2nd trial
    scheduler.on_trial_add(None, trials["t3"])
    s.on_trial_result("t3", row(0.3, 1))
    scheduler.on_trial_result(None, trials["t3"], row(0.3, 1))
    s.on_trial_complete("t2", row(0.4))  # the fixed study: searched
    scheduler.on_trial_complete(None, trials["t2"], row(0.4))
    assert s.suggest("f1")["phase"] == "final"
    s.save(str(HERE / "state.pkl"))
    nxt = [s.suggest(tid) for tid in ("f2", "x1")]
    s.on_trial_complete("t3", row(0.7))
    after = s.suggest("f3")
    expected = {
        "python": sys.version.split()[0], "optuna": optuna.__version__, "next": nxt, "after_t3": after,
        "statuses": {k: v.status for k, v in s.studies.items()},
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
