"""Every searcher and scheduler of the sweep file, built by tuning/search.py and run in a real sweep on the
shared Ray (a fast stand-in trial function keeps them seconds each; one sweep trains the real Engine), plus
every refusal's message."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from ray import tune

from conftest import TINY_SWEEP
from proselflc.config import ConfigError
from proselflc.tuning import SweepRunner, build_sweep_config, run_sweep
from proselflc.tuning.search import SEARCHERS, grid_size
from sweep_files import results, study_trial_dirs, study_trials

STUDY = "symmetric-0.4/crossentropy"
LR_GRID = [0.01, 0.03, 0.1]
MOMENTA = [0.0, 0.9]


def _stand_in() -> Any:
    """Reports a learning curve that peaks at lr = 0.1 without training (nested: Ray pickles it by value)."""

    def run(params: dict[str, Any], *, base: dict[str, Any], **_: Any) -> None:
        gap = abs(math.log10(params.get("optim.lr", 0.1)) + 1.0)
        for epoch in range(1, base["train"]["epochs"] + 1):
            value = 0.9 - 0.2 * gap + 0.01 * epoch
            tune.report({"epoch": epoch, "val_accuracy": value, "test_accuracy": value, "diverged": False})

    return run


def sweep_raw(tmp_path: Path, name: str, **changes: Any) -> dict[str, Any]:
    """One study (crossentropy at 40% noise), 4 epochs, lr and momentum searched."""
    return {
        **TINY_SWEEP,
        "name": name,
        "storage_path": str(tmp_path),
        "base": {**TINY_SWEEP["base"], "train": {**TINY_SWEEP["base"]["train"], "epochs": 4}},
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"crossentropy": {"search": {
            "optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.5},
            "optim.momentum": {"type": "uniform", "low": 0.0, "high": 0.9},
        }}},
        "num_samples": 5,
        "asha": {},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "max_concurrent_trials": 2,
        "final_seeds": 1,
        **changes,
    }


def run_stand_in(tmp_path: Path, name: str, **changes: Any) -> Path:
    return run_sweep(build_sweep_config(sweep_raw(tmp_path, name, **changes)), trial_function=_stand_in())


def epochs_of(sweep_dir: Path) -> list[int]:
    return sorted(len(results(d)) for d in study_trial_dirs(sweep_dir, STUDY))


@pytest.mark.ray
@pytest.mark.parametrize("name", sorted(set(SEARCHERS) - {"grid"}))
def test_each_searcher_runs_a_study_and_selects_its_best_trial(ray_session: Any, tmp_path: Path, name: str) -> None:
    sweep_dir = run_stand_in(tmp_path, name, searcher={"name": name, "seed": 3})
    trials = study_trials(sweep_dir, STUDY)
    assert len(trials) == 5
    lrs = [config["optim.lr"] for config, _ in trials]
    assert all(0.01 <= lr <= 0.5 for lr in lrs) and len(set(lrs)) == 5  # five distinct suggestions
    finals = study_trials(sweep_dir, STUDY, "final")
    assert len(finals) == 1 and len(finals[0][1]) == 4  # the best config re-run for the full 4 epochs
    full = [(config, rows) for config, rows in trials if len(rows) == 4]
    best = max(full, key=lambda trial: trial[1][-1]["val_accuracy"])
    assert finals[0][0]["optim.lr"] == best[0]["optim.lr"]


@pytest.mark.ray
def test_the_searcher_seed_makes_suggestions_reproducible(ray_session: Any, tmp_path: Path) -> None:
    # Three suggestions each and no re-runs: only the searcher's suggestions are compared.
    small = {"max_concurrent_trials": 1, "num_samples": 3, "final_seeds": 0}
    first = run_stand_in(tmp_path, "a", searcher={"name": "qmc", "seed": 7}, **small)
    again = run_stand_in(tmp_path, "b", searcher={"name": "qmc", "seed": 7}, **small)
    other = run_stand_in(tmp_path, "c", searcher={"name": "qmc", "seed": 8}, **small)
    lrs = [sorted(c["optim.lr"] for c, _ in study_trials(d, STUDY)) for d in (first, again, other)]
    assert len(lrs[0]) == 3 and lrs[0] == lrs[1] != lrs[2]


@pytest.mark.ray
def test_grid_runs_every_combination_exactly_once_and_asha_still_stops_trials(ray_session: Any, tmp_path: Path) -> None:
    space = {"optim.lr": {"type": "choice", "values": LR_GRID},
             "optim.momentum": {"type": "choice", "values": MOMENTA}}
    sweep_dir = run_stand_in(tmp_path, "grid", searcher={"name": "grid"}, num_samples=6,
                             methods={"crossentropy": {"search": space}})
    trials = study_trials(sweep_dir, STUDY)
    combos = sorted((c["optim.lr"], c["optim.momentum"]) for c, _ in trials)
    assert combos == sorted(itertools.product(LR_GRID, MOMENTA))
    assert min(len(rows) for _, rows in trials) < 4  # ASHA (grace 1, factor 2) cut some grid points short


@pytest.mark.ray
@pytest.mark.parametrize(("scheduler", "stops"), [("median", True), ("fifo", False)])
def test_median_stops_poor_trials_and_fifo_stops_none(
    ray_session: Any, tmp_path: Path, scheduler: str, stops: bool
) -> None:
    spec = {"name": "median", "grace_period": 1, "min_samples_required": 1} if scheduler == "median" else {"name": "fifo"}
    # One trial at a time, lr from poor to best: the median rule judges each against the ones before it.
    space = {"optim.lr": {"type": "choice", "values": [0.1, 0.01, 0.03]}}
    sweep_dir = run_stand_in(tmp_path, scheduler, scheduler=spec, searcher={"name": "grid"}, num_samples=3,
                             max_concurrent_trials=1, per_study_concurrency=1,
                             methods={"crossentropy": {"search": space}})
    epochs = epochs_of(sweep_dir)
    assert len(epochs) == 3 and max(epochs) == 4
    assert (min(epochs) < 4) is stops


@pytest.mark.ray
def test_a_real_engine_sweep_with_random_search_and_median_stopping(ray_session: Any, tmp_path: Path) -> None:
    raw = {**TINY_SWEEP, "name": "real", "storage_path": str(tmp_path), "noise": {"kind": "symmetric", "rates": [0.4]},
           "methods": {"proselflc": TINY_SWEEP["methods"]["proselflc"]}, "final_seeds": 1, "asha": {},
           "searcher": {"name": "random", "seed": 1}, "scheduler": {"name": "median", "grace_period": 1}}
    sweep_dir = run_sweep(build_sweep_config(raw))
    study = "symmetric-0.4/proselflc"
    trials = study_trials(sweep_dir, study)
    assert len(trials) == 3 and all(rows and 0 <= rows[-1]["test_accuracy"] <= 1 for _, rows in trials)
    assert len(study_trials(sweep_dir, study, "final")) == 1


def test_grid_studies_run_their_own_size_and_num_samples_must_be_the_largest(tmp_path: Path) -> None:
    small = {"optim.lr": {"type": "choice", "values": LR_GRID}}
    big = {**small, "loss.exp_base": {"type": "choice", "values": [4, 8, 16, 32]}}
    methods = {"crossentropy": {"search": small}, "proselflc": {"hyperparameters": {"trust_mode": "entropy"},
                                                                 "search": big}}
    sweep = build_sweep_config(sweep_raw(tmp_path, "g", searcher={"name": "grid"}, num_samples=12, methods=methods))
    runner = SweepRunner(sweep)
    assert [plan.num_samples for plan in runner.plans()] == [3, 12]
    assert grid_size(runner.spaces["proselflc"]) == 12
    with pytest.raises(ConfigError, match=r"num_samples = 5, .*crossentropy: 3, proselflc: 12.*num_samples: 12"):
        build_sweep_config(sweep_raw(tmp_path, "g", searcher={"name": "grid"}, num_samples=5, methods=methods))


def objective(params: dict[str, Any]) -> float:
    return -abs(math.log10(params["optim.lr"]) + 1.0) - params["optim.momentum"]


def suggestions(runner: SweepRunner, n: int) -> list[dict[str, Any]]:
    """The first `n` search suggestions of the runner's one study, each told `objective` before the next."""
    searcher = runner.searcher()
    out = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        params = {k: v for k, v in config.items() if k.startswith("optim.")}
        value = objective(params)
        result = {"val_accuracy": value, "epoch": 4, "training_iteration": 4}
        searcher.on_trial_result(f"t{i}", result)
        searcher.on_trial_complete(f"t{i}", result)
        out.append(params)
    return out


def reference(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict[str, Any]]:
    """The same `n` asks and tells on a plain Optuna study with `sampler`: what the study's sampler should give."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    space = {"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True),
             "optim.momentum": optuna.distributions.FloatDistribution(0.0, 0.9)}
    out = []
    for _ in range(n):
        trial = study.ask(space)
        study.tell(trial, objective(trial.params))
        out.append(trial.params)
    return out


def test_each_strategy_builds_its_optuna_sampler(tmp_path: Path) -> None:
    expected = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                "cmaes": optuna.samplers.CmaEsSampler, "gp": optuna.samplers.GPSampler,
                "qmc": optuna.samplers.QMCSampler}
    tpe = build_sweep_config(sweep_raw(tmp_path, "t", num_samples=6, searcher={
        "name": "tpe", "multivariate": True, "group": True, "n_startup_trials": 2}))
    with warnings.catch_warnings():  # QMC, and TPE's multivariate and group, are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, sampler in expected.items():
            runner = SweepRunner(build_sweep_config(sweep_raw(tmp_path, name, searcher={"name": name})))
            assert suggestions(runner, 1) == reference(sampler(seed=0), 1), name
        configured = reference(optuna.samplers.TPESampler(seed=0, n_startup_trials=2, multivariate=True, group=True), 5)
        longer_startup = reference(optuna.samplers.TPESampler(seed=0, n_startup_trials=4, multivariate=True), 5)
    ours = suggestions(SweepRunner(tpe), 5)
    assert ours == configured and ours != longer_startup, "the sweep's TPE settings reach the study's sampler"
    assert SweepRunner(build_sweep_config(sweep_raw(tmp_path, "f", scheduler={"name": "fifo"}))).scheduler().make is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"searcher": {"name": "tpee"}}, "unknown searcher 'tpee'; valid: cmaes, gp, grid, qmc, random, tpe (did you mean 'tpe'?)"),
        ({"searcher": {"name": "optuna", "sampler": "tpe"}}, "earlier form of the searcher section; run `proselflc migrate"),
        ({"searcher": {"name": "random", "sampler": "tpe"}}, "searcher: {name: random, sampler: tpe} is the earlier form"),
        ({"searcher": {"name": "random", "n_startup_trials": 3}}, "searcher.random.n_startup_trials: unknown key"),
        ({"searcher": {"name": "tpe", "group": True}}, "group = true needs multivariate = true"),
        ({"searcher": {"name": "qmc", "qmc_type": "lattice"}}, "searcher.qmc.qmc_type"),
        ({"searcher": {"name": "grid"}}, "searcher grid needs every searched key to be a choice"),
        ({"searcher": {"name": "grid"}}, "optim.lr, optim.momentum are not"),
        ({"searcher": {"name": "cmaes"}, "methods": {"crossentropy": {"search": {
            "optim.lr": {"type": "choice", "values": LR_GRID}, "optim.momentum": {"type": "choice", "values": MOMENTA}}}}},
         "every searched key here is categorical (choice): optim.lr, optim.momentum"),
        ({"scheduler": {"name": "hyperband"}}, "scheduler 'hyperband' is not supported: Ray's HyperBand pauses trials"),
        ({"scheduler": {"name": "pbt"}}, "scheduler 'pbt' is not supported: PBT changes a trial's hyperparameters"),
        ({"scheduler": {"name": "medain"}}, "unknown scheduler 'medain'; valid: asha, fifo, median (did you mean 'median'?)"),
        ({"scheduler": {"name": "fifo", "grace_period": 9}}, "scheduler.grace_period = 9 exceeds the trial length 4"),
        ({"scheduler": {"name": "median", "min_samples_required": 0}}, "scheduler.median.min_samples_required"),
    ],
)
def test_refused_strategies_say_why_and_what_is_valid(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_sweep_config(sweep_raw(tmp_path, "bad", **changes))
    assert expected in str(info.value)
