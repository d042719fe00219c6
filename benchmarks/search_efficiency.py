"""Search efficiency under label noise: regret against epochs for random and TPE, each with FIFO, ASHA and ASHA after
the memorisation onset, across noise settings.

A tabular benchmark in two steps:

1. The grids, trained for real (`benchmarks.noisy_grid`): per noise setting (symmetric 20/40/60/80%, pair-flip 45%)
   and per study (cross entropy, label smoothing, ProSelfLC), a 12-config grid in the quickstart's regime (digits,
   MLP-512, no weight decay, 60 epochs), every run to full length with the Engine in-process, one training seed.
   Each config's per-epoch rows (memorisation signal included) and last per-example correctness are cached on disk:
   a rerun replays without training.
2. The searches, replayed in-process: per searcher x scheduler x searcher seed, the platform's own study objects
   (`StudySearcher` with the sweep's Optuna sampler from `tuning.search`, and the study's Ray Tune scheduler from
   the same factory `StudyScheduler` calls) are driven exactly as Ray Tune's controller drives them for a study
   running one trial at a time: suggest, then per recorded epoch of the grid point nearest to the suggestion (log
   distance) the scheduler's decision first and the searcher's result if it continues, then both are told the
   trial completed. No Ray cluster, no trial processes: a replayed study takes milliseconds instead of ~1 s per
   trial of Ray overhead, so 10 seeds of 6 strategies x 15 studies fit in minutes.

Regret at a budget = grid best's clean test accuracy minus that of the configuration the search selects (best last
noisy val_accuracy among trials trained to full length, the platform's `select_best`) from the trials it had
finished within that many epochs, in accuracy points; budgets are % of the study's grid epochs. The grid best is
selected by the same rule on the grid; the oracle is the grid's best clean test accuracy.

    python -m benchmarks search_efficiency [--quick] [--settings symmetric-0.8 ...] [--seeds N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._harness import TrialRecord, load, require_positive, table
from benchmarks.noisy_grid import SETTINGS, STUDIES, GridPoint, Setting, load_grid, run_config, train_grids

METRIC, MODE = "val_accuracy", "max"
#: How close (in accuracy points) a selection must come to the grid best to count as reaching it.
TOLERANCE_POINTS = 0.5
#: The target: the default strategy reaches the grid best (within the tolerance) with at most this share of epochs.
TARGET_FRACTION = 0.15
SEARCHERS = ("random", "tpe")
#: The schedulers compared: no early stopping, ASHA with a fixed grace period of 1 epoch (reduction factor 3: the
#: default of a sweep without noise), and ASHA whose first rung is at 1, 2 or 3 times the study's estimated
#: memorisation onset (3 times: the default of a noisy sweep).
SCHEDULERS: dict[str, dict[str, Any]] = {
    "fifo": {"name": "fifo"},
    "asha": {"name": "asha"},
    "onset": {"name": "asha", "grace": "onset"},
    "onset2": {"name": "asha", "grace": "onset", "onset_factor": 2.0},
    "onset3": {"name": "asha", "grace": "onset", "onset_factor": 3.0},
}
#: The strategy measured against the target: a noisy sweep's default (`tuning.config.NOISY_ONSET_FACTOR`).
DEFAULT = ("tpe", "onset3")
#: Budgets (% of a study's grid epochs) at which regret is tabulated.
BUDGETS = (2, 5, 10, 15, 20, 30, 50)


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run."""

    settings: tuple[Setting, ...]
    studies: tuple[str, ...]
    axes: dict[str, dict[str, tuple[Any, ...]]]
    epochs: int
    seeds: int
    num_samples: int
    searchers: tuple[str, ...]
    schedulers: tuple[str, ...]
    limit: int | None = None


def _search_space(axes: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """The sweep's space over a grid's range: numbers log-uniform between its extremes, strings as choices."""
    space: dict[str, Any] = {}
    for key, values in axes.items():
        if len(values) == 1:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            space[key] = {"type": "loguniform", "low": float(min(values)), "high": float(max(values))}
        else:
            space[key] = {"type": "choice", "values": list(values)}
    return space


def sweep_raw(plan: Plan, setting: Setting, study: str, searcher: str, scheduler: str, seed: int) -> dict[str, Any]:
    """The sweep file (as a dict) of one study searched by one strategy and seed (no final re-runs)."""
    base = run_config(setting, study, {}, plan.epochs, plan.limit)
    base.pop("noise")
    return {
        "name": f"{searcher}-{scheduler}-seed{seed}",
        "base": base,
        "noise": {"kind": setting.kind, "rates": [setting.rate]},
        "methods": {study: {"hyperparameters": STUDIES[study]["fixed"], "search": _search_space(plan.axes[study])}},
        "metric": METRIC,
        "mode": MODE,
        "num_samples": plan.num_samples,
        "searcher": {"name": searcher, "seed": seed},
        "scheduler": SCHEDULERS[scheduler],
        "per_study_concurrency": 1,  # one trial at a time: its order of trials, and the epochs spent, are exact
        "final_seeds": 0,
        "storage_path": "replay-only",
    }


def nearest(params: dict[str, Any], axes: dict[str, tuple[Any, ...]]) -> tuple[Any, ...]:
    """The grid point nearest to a suggestion: per key, the closest value on a log scale (or the same choice)."""
    point = []
    for key, values in axes.items():
        value = params.get(key, values[0])
        if isinstance(value, int | float) and not isinstance(value, bool) and all(
            isinstance(v, int | float) and v > 0 for v in values
        ):
            value = min(values, key=lambda v: abs(math.log(v) - math.log(value)))
        point.append(value)
    return tuple(point)


def study_sweep(plan: Plan, setting: Setting, study: str, searcher: str, scheduler: str) -> tuple[Any, Any]:
    """The validated sweep of one study and strategy (searcher seed 0), and its study's validated space."""
    from proselflc.tuning import build_sweep_config

    sweep = build_sweep_config(sweep_raw(plan, setting, study, searcher, scheduler, 0))
    return sweep, sweep.spaces[study]


def replay_study(plan: Plan, study: str, sweep: Any, space: Any, seed: int,
                 grid: dict[tuple[Any, ...], GridPoint]) -> list[TrialRecord]:
    """One study searched on the recorded grid, in-process; its trials in creation order (params: grid point)."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from proselflc import search_spaces
    from proselflc.sweep_contract import PHASE, STUDY
    from proselflc.tuning import search
    from proselflc.tuning.studies import StudyPlan, StudySearcher

    sweep = sweep.model_copy(update={"searcher": sweep.searcher.model_copy(update={"seed": seed})})
    searcher_ = StudySearcher(
        [StudyPlan(study, search_spaces.to_optuna(space))], metric=METRIC, mode=MODE, max_t=sweep.max_t,
        num_samples=sweep.num_samples, final_seeds=[], sampler=search.sampler_factory(sweep.searcher, sweep.n_startup_trials),
        per_study_concurrency=1,
    )
    make = search.scheduler_factory(sweep.scheduler_spec, sweep.metric, sweep.mode, sweep.max_t)
    scheduler_ = make() if make is not None else None
    axes = plan.axes[study]
    trials = []
    for i in range(sweep.num_samples):
        trial_id = f"{i:05d}"
        config = searcher_.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            break
        params = {k: v for k, v in config.items() if k not in (STUDY, PHASE)}
        point = nearest(params, axes)
        trial = Trial("replay", config=config, trial_id=trial_id, stub=True)
        if scheduler_ is not None:
            scheduler_.on_trial_add(None, trial)
        reported: list[dict[str, Any]] = []
        for iteration, row in enumerate(grid[point].rows, 1):
            result = {**row, "training_iteration": iteration, "trial_id": trial_id}
            reported.append(row)
            decision = TrialScheduler.CONTINUE
            if scheduler_ is not None:
                decision = scheduler_.on_trial_result(None, trial, result)
            if decision == TrialScheduler.STOP:  # as Ray's controller: a stopped trial's searcher hears completion
                break
            searcher_.on_trial_result(trial_id, result)
        if scheduler_ is not None:
            scheduler_.on_trial_complete(None, trial, result)
        searcher_.on_trial_complete(trial_id, result)
        trials.append(TrialRecord(trial_id, {"point": point}, reported, [], False))
    return trials


def grid_best(grid: dict[tuple[Any, ...], GridPoint], max_t: int) -> GridPoint:
    """The grid point the platform's rule selects: best last val_accuracy (first in grid order on ties)."""
    from proselflc.tuning import select_best

    best = select_best(((p, g.last) for p, g in grid.items()), METRIC, MODE, max_t)
    if best is None:
        raise RuntimeError(f"no grid config reported a finite {METRIC}")
    return grid[best[0]]


def regret_steps(trials: list[TrialRecord], max_t: int, best_test: float) -> list[tuple[int, float]]:
    """(epochs spent, regret in points) after each trial that changes the selection, in trial order.

    Only trials trained to `max_t` are selectable (as `select_best` prefers them); the epochs count
    every trial, early-stopped ones included.
    """
    from proselflc.tuning import select_best

    spent, full, steps = 0, [], []
    for trial in trials:
        spent += trial.epochs
        if trial.errored or trial.epochs < max_t:
            continue
        full.append(trial)
        best = select_best(((t.params, t.last) for t in full), METRIC, MODE, max_t)
        if best is not None:
            steps.append((spent, 100 * (best_test - float(best[1]["test_accuracy"]))))
    return steps


def regret_at(steps: list[tuple[int, float]], budget: float) -> float:
    """Regret of the selection made within `budget` epochs; inf when no trial had finished by then."""
    made = [regret for spent, regret in steps if spent <= budget]
    return made[-1] if made else math.inf


def epochs_to_reach(steps: list[tuple[int, float]]) -> int | None:
    """Epochs spent when the selection first came within the tolerance of the grid best; None if never."""
    return next((spent for spent, regret in steps if regret <= TOLERANCE_POINTS + 1e-9), None)


def stopped_above(trials: list[TrialRecord], grid: dict[tuple[Any, ...], GridPoint], max_t: int) -> tuple[int, int]:
    """(early-stopped trials whose full-length clean test beats the final selection's, early-stopped trials)."""
    full = [t for t in trials if t.epochs >= max_t]
    if not full:
        return 0, 0
    selected = max(full, key=lambda t: t.last[METRIC])  # select_best's rule (ties: first) among full-length trials
    selected = next(t for t in full if t.last[METRIC] == selected.last[METRIC])
    stopped = [t for t in trials if t.epochs < max_t]
    above = sum(grid[t.params["point"]].last["test_accuracy"] > selected.last["test_accuracy"] for t in stopped)
    return above, len(stopped)


# -- the suite -----------------------------------------------------------------------------------------


@dataclass
class Runs:
    """Every replayed search of one (setting, study): {(searcher, scheduler): [per seed: its trials]}."""

    grid: dict[tuple[Any, ...], GridPoint]
    runs: dict[tuple[str, str], list[list[TrialRecord]]] = field(default_factory=dict)


def replay_all(plan: Plan, setting: Setting, study: str, grid: dict[tuple[Any, ...], GridPoint]) -> Runs:
    """Every strategy x seed of one (setting, study); module-level so a process pool can run it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = Runs(grid)
    for searcher in plan.searchers:
        for scheduler in plan.schedulers:
            sweep, space = study_sweep(plan, setting, study, searcher, scheduler)
            runs.runs[(searcher, scheduler)] = [replay_study(plan, study, sweep, space, seed, grid)
                                                for seed in range(plan.seeds)]
    return runs


def measure(plan: Plan, cache: Path, workers: int, log: Callable[[str], None] = print
            ) -> tuple[dict[tuple[Setting, str], Runs], float, float]:
    """Train what the cache lacks, then replay every strategy (`workers` processes over the studies);
    ({(setting, study): Runs}, train s, replay s)."""
    train_s = train_grids(plan.settings, plan.studies, plan.axes, plan.epochs, cache, workers, plan.limit, log)
    start = time.perf_counter()
    jobs = {}
    for setting in plan.settings:
        grids = load_grid(setting, cache, plan.epochs, plan.studies, plan.axes, plan.limit)
        jobs.update({(setting, study): (plan, setting, study, grids[study]) for study in plan.studies})
    if workers == 1 or len(jobs) == 1:
        out = {key: replay_all(*job) for key, job in jobs.items()}
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {key: pool.submit(replay_all, *job) for key, job in jobs.items()}
            out = {key: future.result() for key, future in futures.items()}
    return out, train_s, time.perf_counter() - start


# -- report --------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _points(value: float) -> str:
    return "none yet" if math.isinf(value) else f"{value:.2f}"


def _onset_epochs(g: GridPoint) -> int | None:
    from proselflc.memorisation import memorisation_onset

    return memorisation_onset([r["epoch"] for r in g.rows], [r.get("prediction_changes", math.nan) for r in g.rows])


def _climb_epoch(g: GridPoint) -> int | None:
    """The first epoch noisy_fit rises 5 points above its minimum so far (memorisation, seen with clean labels)."""
    low = math.inf
    for row in g.rows:
        fit = row.get("noisy_fit", math.nan)
        if not math.isfinite(fit):
            continue
        low = min(low, fit)
        if fit > low + 0.05:
            return int(row["epoch"])
    return None


@dataclass
class Summary:
    """The figures of one (setting, study) the verdicts read."""

    setting: Setting
    study: str
    grid_epochs: int
    best_test: float
    oracle: float
    medians: dict[tuple[str, str], list[float]]
    reach: dict[tuple[str, str], float]
    lines: list[str]
    #: Per strategy: the median regret after all trials, and the median epochs spent (% of the grid's).
    final: dict[tuple[str, str], float] = field(default_factory=dict)
    spent: dict[tuple[str, str], float] = field(default_factory=dict)


def summarise(plan: Plan, setting: Setting, study: str, runs: Runs) -> Summary:
    grid = runs.grid
    best = grid_best(grid, plan.epochs)
    best_test = best.last["test_accuracy"]
    tests = [g.last["test_accuracy"] for g in grid.values()]
    oracle = max(tests)
    near = sum(x >= best_test - TOLERANCE_POINTS / 100 - 1e-9 for x in tests)
    onsets = [_onset_epochs(g) for g in grid.values()]
    climbs = [_climb_epoch(g) for g in grid.values()]
    before = sum(o is not None and c is not None and o < c for o, c in zip(onsets, climbs, strict=True))
    both = sum(o is not None and c is not None for o, c in zip(onsets, climbs, strict=True))
    onset_best = _onset_epochs(best)
    at_onset = next((r["test_accuracy"] for r in best.rows if r["epoch"] == onset_best), math.nan)
    grid_epochs = len(grid) * plan.epochs
    lines = [
        (f"{setting.label}, {study}: {len(grid)} configs x {plan.epochs} epochs = {grid_epochs} epochs; grid best "
        f"(noisy val rule) {dict(zip(plan.axes[study], best.point, strict=True))}: clean test {best_test:.4f}; oracle "
        f"{oracle:.4f} (noisy-validation cost {100 * (oracle - best_test):.2f} points); median {_median(tests):.4f}; "
        f"{near}/{len(grid)} configs within {TOLERANCE_POINTS} points of the grid best"),
        (f"  memorisation onset (first smoothed minimum of prediction_changes): median epoch "
        f"{_median([o for o in onsets if o is not None]) if any(o is not None for o in onsets) else 'none'}; "
        f"{sum(o is None for o in onsets)} configs without one; before noisy_fit climbs in {before}/{both} configs "
        f"where both happen; the grid best at its onset (epoch {onset_best}): clean test {at_onset:.4f}"),
    ]
    budgets = list(BUDGETS)  # "none yet" below one full-length trial (60 epochs are 8.3% of a 12-config grid)
    medians: dict[tuple[str, str], list[float]] = {}
    reach: dict[tuple[str, str], float] = {}
    finals: dict[tuple[str, str], float] = {}
    spents: dict[tuple[str, str], float] = {}
    rows = []
    for (searcher, scheduler), seeds in runs.runs.items():
        steps = [regret_steps(trials, plan.epochs, best_test) for trials in seeds]
        medians[(searcher, scheduler)] = [_median([regret_at(s, b * grid_epochs / 100) for s in steps])
                                          for b in budgets]
        reached = [epochs_to_reach(s) for s in steps]
        reach[(searcher, scheduler)] = _median([math.inf if r is None else 100 * r / grid_epochs for r in reached])
        spent = _median([100 * sum(t.epochs for t in trials) / grid_epochs for trials in seeds])
        final_test = [s[-1][1] if s else math.inf for s in steps]
        finals[(searcher, scheduler)], spents[(searcher, scheduler)] = _median(final_test), spent
        oracle_regret = _median([100 * (oracle - best_test) + r for r in final_test])
        counted = [stopped_above(trials, grid, plan.epochs) for trials in seeds]
        above, stopped = sum(a for a, _ in counted), sum(n for _, n in counted)
        rows.append([f"{searcher} + {scheduler}", *(_points(m) for m in medians[(searcher, scheduler)]),
                     _points(_median(final_test)), _points(oracle_regret), f"{spent:.0f}%",
                     f"{sum(r is not None for r in reached)}/{len(seeds)}",
                     "not reached" if math.isinf(reach[(searcher, scheduler)])
                     else f"{reach[(searcher, scheduler)]:.1f}%",
                     f"{above}/{stopped}" if stopped else "none stopped"])
    lines.append(table(["searcher + scheduler", *(f"{b}%" for b in budgets), "after all", "vs oracle", "epochs",
                        f"seeds within {TOLERANCE_POINTS}", "median epochs to reach", "stopped trials above pick"],
                       rows))
    return Summary(setting, study, grid_epochs, best_test, oracle, medians, reach, lines, finals, spents)


def _worse_than_fifo(s: Summary, strategy: tuple[str, str]) -> list[str]:
    """The budgets at which `strategy`'s median regret is more than the tolerance above FIFO's (same searcher)."""
    fifo = (strategy[0], "fifo")
    if fifo not in s.medians:
        return []
    return [f"{b}%" for b, d, f in zip(BUDGETS, s.medians[strategy], s.medians[fifo], strict=False)
            if (math.isinf(d) and not math.isinf(f)) or (not math.isinf(f) and d - f > TOLERANCE_POINTS + 1e-9)]


def overall(summaries: list[Summary], plan: Plan) -> list[str]:
    """Per strategy over every (setting, study): how often it ends within the tolerance of the grid best, how often
    it is never more than the tolerance worse than FIFO, its mean final regret and its median epochs spent."""
    rows = []
    for strategy in [(a, b) for a in plan.searchers for b in plan.schedulers]:
        have = [s for s in summaries if strategy in s.medians]
        finals = [s.final[strategy] for s in have]
        rows.append([" + ".join(strategy),
                     f"{sum(f <= TOLERANCE_POINTS for f in finals)}/{len(have)}",
                     f"{sum(not _worse_than_fifo(s, strategy) for s in have)}/{len(have)}",
                     f"{statistics.fmean(f for f in finals if math.isfinite(f)):.2f}",
                     f"{_median([s.spent[strategy] for s in have]):.0f}%"])
    return ["every setting and study together:",
            table(["searcher + scheduler", f"ends within {TOLERANCE_POINTS} of grid best",
                   f"never > {TOLERANCE_POINTS} worse than fifo", "mean final regret", "median epochs"], rows)]


def verdicts(summaries: list[Summary], default: tuple[str, str]) -> list[str]:
    """Per (setting, study): is the default within tolerance by the target share, and never 0.5 worse than FIFO."""
    rows = []
    fifo = (default[0], "fifo")
    for s in summaries:
        if default not in s.medians:
            continue
        reach = s.reach[default]
        met_reach = reach <= 100 * TARGET_FRACTION
        worse = _worse_than_fifo(s, default)
        rows.append([s.setting.label, s.study, "not reached" if math.isinf(reach) else f"{reach:.1f}%",
                     "met" if met_reach else "NOT met", "met" if not worse else f"NOT met ({', '.join(worse)})"])
    return [f"targets for {' + '.join(default)}:",
            table(["setting", "study", "median epochs to reach", f"<= {100 * TARGET_FRACTION:.0f}% of grid",
                   f"never > {TOLERANCE_POINTS} worse than {' + '.join(fifo)}"], rows)]


def plot(plan: Plan, summaries: list[Summary], measured: dict[tuple[Setting, str], Runs], path: Path) -> None:
    """Median regret against % of the grid's epochs, the default searcher's schedulers: rows settings, columns
    studies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(plan.settings), len(plan.studies), squeeze=False,
                             figsize=(4.2 * len(plan.studies), 3.0 * len(plan.settings)))
    by_key = {(s.setting, s.study): s for s in summaries}
    xs = np.linspace(0.5, 60, 240)
    for i, setting in enumerate(plan.settings):
        for j, study in enumerate(plan.studies):
            ax, summary = axes[i][j], by_key[(setting, study)]
            for (searcher, scheduler), seeds in sorted(measured[(setting, study)].runs.items()):
                if searcher != DEFAULT[0]:  # one searcher's schedulers per panel: readable at this size
                    continue
                steps = [regret_steps(t, plan.epochs, summary.best_test) for t in seeds]
                values = np.array([[regret_at(s, x * summary.grid_epochs / 100) for x in xs] for s in steps])
                values[np.isinf(values)] = np.nan
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mid = np.nanmedian(values, axis=0)
                style = {"fifo": "--", "asha": ":", "onset": (0, (1, 1)), "onset2": "-."}.get(scheduler, "-")
                ax.plot(xs, mid, linestyle=style, label=f"{searcher} + {scheduler}")
            ax.axhline(TOLERANCE_POINTS, color="grey", lw=0.8, ls=":")
            ax.axvline(100 * TARGET_FRACTION, color="grey", lw=0.6)
            ax.set_title(f"{setting.label}, {study}", fontsize=9)
            low, high = ax.get_ylim()
            ax.set_ylim(min(-1.0, low), max(5.0, high))
            if i == len(plan.settings) - 1:
                ax.set_xlabel("epochs spent (% of grid)")
            if j == 0:
                ax.set_ylabel("median regret (points)")
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- command line --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks search_efficiency", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="symmetric 60%% only, ProSelfLC only, a 4-config grid of 8 epochs on 600 examples, 1 seed")
    p.add_argument("--settings", nargs="+", default=None,
                   help="noise settings as kind-rate (default: symmetric-0.2 symmetric-0.4 symmetric-0.6 "
                        "symmetric-0.8 pairflip-0.45)")
    p.add_argument("--studies", nargs="+", choices=sorted(STUDIES), default=None, help="default: all three")
    p.add_argument("--searchers", nargs="+", choices=SEARCHERS, default=None, help="default: random and tpe")
    p.add_argument("--schedulers", nargs="+", choices=tuple(SCHEDULERS), default=None,
                   help="default: fifo, asha (grace 1), onset (ASHA after the memorisation onset)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run = max_t (default 60; quick 8)")
    p.add_argument("--seeds", type=int, default=None, help="searcher seeds 0..N-1 (default 10; quick 1)")
    p.add_argument("--num-samples", type=int, default=None, help="trials per study (default 8; quick 4)")
    p.add_argument("--workers", type=int, default=2, help="processes training the grid (1 torch thread each)")
    p.add_argument("--cache", type=Path, default=Path("results/search_efficiency/grids"),
                   help="where the trained grids are kept (default results/search_efficiency/grids)")
    p.add_argument("--plot", type=Path, default=None, help="write the regret plot here (PNG)")
    args = p.parse_args(argv)
    require_positive(p, args, "epochs", "seeds", "num_samples", "workers")
    return args


def _setting(text: str) -> Setting:
    kind, _, rate = text.rpartition("-")
    return Setting(kind, float(rate))


def plan_from(args: argparse.Namespace) -> Plan:
    quick = args.quick
    studies = tuple(args.studies or (("proselflc",) if quick else tuple(STUDIES)))
    axes = {s: dict(STUDIES[s]["axes"]) for s in studies}
    if quick:
        axes = {s: {k: (v[0], v[-1]) if i < 2 else v[:1] for i, (k, v) in enumerate(a.items())}
                for s, a in axes.items()}
    return Plan(
        settings=tuple(map(_setting, args.settings)) if args.settings else ((Setting("symmetric", 0.6),) if quick
                                                                             else SETTINGS),
        studies=studies,
        axes=axes,
        epochs=args.epochs or (8 if quick else 60),
        seeds=args.seeds or (1 if quick else 10),
        num_samples=args.num_samples or (4 if quick else 8),
        searchers=tuple(args.searchers or SEARCHERS),
        schedulers=tuple(args.schedulers or SCHEDULERS),
        limit=600 if quick else None,
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    print(f"search efficiency: digits, MLP-512, no weight decay; settings {', '.join(s.label for s in plan.settings)}; "
          f"studies {', '.join(plan.studies)}; {plan.epochs} epochs per run; searchers {', '.join(plan.searchers)} x "
          f"schedulers {', '.join(plan.schedulers)}; {plan.num_samples} trials per study, seeds 0..{plan.seeds - 1}; "
          f"{load()}", flush=True)
    measured, train_s, replay_s = measure(plan, args.cache, args.workers, log=lambda m: print(m, flush=True))
    summaries = [summarise(plan, setting, study, measured[(setting, study)])
                 for setting in plan.settings for study in plan.studies]
    print(f"grid training: {train_s:.0f} s (0 when every config was cached in {args.cache}); replay: {replay_s:.0f} s; "
          f"after: {load()}", flush=True)
    for s in summaries:
        print("\n".join(s.lines) + "\n", flush=True)
    print("\n".join(overall(summaries, plan)) + "\n", flush=True)
    print("\n".join(verdicts(summaries, DEFAULT)), flush=True)
    if args.plot is not None:
        plot(plan, summaries, measured, args.plot)
        print(f"plot: {args.plot}", flush=True)
    return 0



