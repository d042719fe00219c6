"""Search efficiency: the platform's ASHA + Optuna TPE sweep vs. the full ProSelfLC grid, in training epochs.

The ProSelfLC experiments swept a full grid, trust_mode x exp_base x logit_temperature, every run to
the end. Here, on digits at 40% symmetric noise by default (the quickstart recipe, one training seed shared by
every run so that two runs of one config are bit-identical):

- grid:  every grid point trained for all epochs by Ray Tune (`tune.grid_search`, no scheduler) with
         the project's trainable. Grid best = the highest noisy `val_accuracy` at the LAST epoch (ties:
         the first in grid order, as the platform's `select_best` does); its score is its clean
         `test_accuracy` at that epoch.
- sweep: the platform's study (`proselflc.tuning.run_sweep`: ASHA early stopping + seeded Optuna TPE)
         over the same ranges (trust_mode as a choice, exp_base and logit_temperature log-uniform
         between the grid's extremes), once per searcher seed.

Replaying each sweep's results in the order the driver received them, the sweep's selection at any
moment is what `select_best` would return then (best last val_accuracy among trials trained to the
full length). Reported per seed: the epochs the sweep had trained when its selection's test_accuracy
first came within 0.5 points of the grid best's, as a fraction of the grid's total epochs (target:
under 15%), and the same for wall time. Both sides ran in this process, on this machine, just now.

    python -m benchmarks search_efficiency [--quick] [--seeds N] [--num-samples N] [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._harness import (
    BENCH_STUDY,
    DIGITS_BASE,
    Stopwatch,
    TrialRecord,
    load,
    local_ray,
    one_study,
    quiet,
    read_experiment,
    require_positive,
    table,
)

METRIC, MODE = "val_accuracy", "max"
#: How close (in accuracy points) the sweep's selection must come to the grid best.
TOLERANCE_POINTS = 0.5
TARGET_FRACTION = 0.15
TRUST_MODES = ("global", "entropy", "max_p")


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run."""

    trust_modes: tuple[str, ...]
    exp_bases: tuple[float, ...]
    temperatures: tuple[float, ...]
    epochs: int
    seeds: int
    num_samples: int
    grace_period: int
    reduction_factor: float
    noise_rate: float

    @property
    def axes(self) -> dict[str, tuple[Any, ...]]:
        return {
            "loss.trust_mode": self.trust_modes,
            "loss.exp_base": self.exp_bases,
            "loss.logit_temperature": self.temperatures,
        }


@dataclass(frozen=True)
class SeedResult:
    """One sweep seed replayed against the grid."""

    seed: int
    trials: int
    epochs: int
    wall_s: float
    reached_epochs: int | None
    reached_s: float | None
    selected: dict[str, Any]
    selected_test: float


def sweep_raw(plan: Plan, seed: int, storage: Path) -> dict[str, Any]:
    """The sweep file (as a dict) of one searcher seed: one study, ProSelfLC at 40% noise, no final re-runs.

    An axis with several values becomes a search domain over the grid's range; a single value is fixed.
    """
    search: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    for key, values in plan.axes.items():
        name = key.split(".", 1)[1]
        if len(values) == 1:
            fixed[name] = values[0]
        elif key == "loss.trust_mode":
            search[key] = {"type": "choice", "values": list(values)}
        else:
            search[key] = {"type": "loguniform", "low": float(min(values)), "high": float(max(values))}
    base = {**DIGITS_BASE, "noise": {**DIGITS_BASE["noise"], "rate": plan.noise_rate},
            "train": {**DIGITS_BASE["train"], "epochs": plan.epochs}}
    return {
        "name": f"sweep-seed{seed}",
        "base": base,
        "noise": {"kind": "symmetric", "rates": [plan.noise_rate]},
        "methods": {"proselflc": {"hyperparameters": fixed, "search": search}},
        "metric": METRIC,
        "mode": MODE,
        "num_samples": plan.num_samples,
        "asha": {"grace_period": plan.grace_period, "reduction_factor": plan.reduction_factor},
        "searcher": {"seed": seed},
        "resources": {"cpu": 1, "gpu": 0},
        "storage_path": str(storage),
        "final_seeds": 0,
        "checkpoint_every": 0,
        "max_failures": 0,
    }


def run_grid(plan: Plan, storage: Path) -> tuple[list[TrialRecord], float]:
    """Every grid point, full length, on Ray Tune with the platform's trainable; (trials, wall seconds)."""
    from ray import tune

    from proselflc import data as data_lib
    from proselflc.trainables import SharedDataset, make_trainable
    from proselflc.tuning import build_sweep_config

    sweep = build_sweep_config(sweep_raw(plan, 0, storage))
    method = sweep.methods[0]
    base = sweep.study_config(sweep.noise.rates[0], method)
    param_space = {key: tune.grid_search(list(values)) for key, values in plan.axes.items()}
    with Stopwatch() as watch:
        shared = SharedDataset.put(data_lib.load(sweep.base.data))
        tuner = tune.Tuner(
            make_trainable({BENCH_STUDY: base}, shared, cpu=1),
            param_space=one_study(param_space),
            tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, reuse_actors=True),
            run_config=tune.RunConfig(name="grid", storage_path=str(storage), verbose=0),
        )
        tuner.fit()
    return read_experiment(storage / "grid"), watch.seconds


def run_sweep_seed(plan: Plan, seed: int, storage: Path) -> tuple[list[TrialRecord], float, float]:
    """The platform's sweep for one searcher seed; (trials, wall seconds, start time)."""
    from proselflc.sweep_contract import EXPERIMENT_DIR
    from proselflc.tuning import build_sweep_config, run_sweep

    sweep = build_sweep_config(sweep_raw(plan, seed, storage))
    with Stopwatch() as watch:
        sweep_dir = run_sweep(sweep, log=quiet)
    return read_experiment(sweep_dir / EXPERIMENT_DIR), watch.seconds, watch.start


def grid_best(trials: list[TrialRecord], max_t: int) -> TrialRecord:
    """The grid point the platform's rule selects: best last val_accuracy (first in grid order on ties)."""
    from proselflc.tuning import select_best

    best = select_best(((t.params, t.last) for t in trials if not t.errored), METRIC, MODE, max_t)
    if best is None:
        raise RuntimeError(f"no grid trial reported a finite {METRIC}; see the error.txt files of the grid")
    return next(t for t in trials if t.params == best[0])


def replay(trials: list[TrialRecord], max_t: int, target: float, start: float) -> tuple[int | None, float | None]:
    """(epochs trained, seconds since `start`) when the sweep's selection first scored >= target; None if never.

    Every reported row is one step of the replay, in arrival order; the selection is re-made whenever a
    trial reaches the full length (only those are selectable, as `select_best` prefers them).
    """
    from proselflc.tuning import select_best

    events = sorted((time, i, j) for i, t in enumerate(trials) for j, time in enumerate(t.times))
    trained = 0
    full: dict[int, TrialRecord] = {}
    for time, i, j in events:
        row = trials[i].rows[j]
        trained += int(row.get("epoch", 0)) - (int(trials[i].rows[j - 1].get("epoch", 0)) if j else 0)
        if row.get("epoch", 0) < max_t:
            continue
        full[i] = trials[i]
        best = select_best(((t.params, t.last) for t in full.values()), METRIC, MODE, max_t)
        if best is not None and best[1]["test_accuracy"] >= target - 1e-9:
            return trained, time - start
    return None, None


def measure(plan: Plan, storage: Path) -> tuple[list[TrialRecord], float, list[SeedResult]]:
    """Run the grid, then one sweep per seed; (grid trials, grid wall seconds, per-seed results)."""
    from proselflc.tuning import select_best

    grid, grid_s = run_grid(plan, storage)
    best = grid_best(grid, plan.epochs)
    target = best.last["test_accuracy"] - TOLERANCE_POINTS / 100
    results = []
    for seed in range(plan.seeds):
        trials, wall_s, start = run_sweep_seed(plan, seed, storage)
        reached_epochs, reached_s = replay(trials, plan.epochs, target, start)
        final = select_best(((t.params, t.last) for t in trials if not t.errored), METRIC, MODE, plan.epochs)
        selected, last = final if final is not None else ({}, {})
        results.append(SeedResult(seed, len(trials), sum(t.epochs for t in trials), wall_s, reached_epochs,
                                  reached_s, selected, float(last.get("test_accuracy", math.nan))))
    return grid, grid_s, results


def _params(params: dict[str, Any]) -> str:
    short = {"loss.trust_mode": "mode", "loss.exp_base": "B", "loss.logit_temperature": "T"}
    return ", ".join(f"{short.get(k, k)}={v:.3g}" if isinstance(v, float) else f"{short.get(k, k)}={v}"
                     for k, v in sorted(params.items()))


def _pct(x: float | None) -> str:
    return "not reached" if x is None else f"{100 * x:.1f}%"


def report(plan: Plan, grid: list[TrialRecord], grid_s: float, results: list[SeedResult]) -> str:
    """The printed result: grid summary, one row per seed, mean fractions against the target."""
    best = grid_best(grid, plan.epochs)
    grid_epochs = sum(t.epochs for t in grid)
    tests = [t.last["test_accuracy"] for t in grid]
    target = best.last["test_accuracy"] - TOLERANCE_POINTS / 100
    near = sum(x >= target - 1e-9 for x in tests)
    ties = [t for t in grid if t.last[METRIC] == best.last[METRIC]]
    lines = [
        f"grid: {len(grid)} configs x {plan.epochs} epochs = {grid_epochs} epochs, {grid_s:.1f} s wall",
        (f"grid best (last-epoch noisy {METRIC}): {_params(best.params)}: {METRIC} {best.last[METRIC]:.4f}, "
         f"clean test_accuracy {best.last['test_accuracy']:.4f} ({len(ties)} config(s) tie on {METRIC}; "
         f"their test_accuracy {min(t.last['test_accuracy'] for t in ties):.4f}-"
         f"{max(t.last['test_accuracy'] for t in ties):.4f})"),
        (f"grid test_accuracy spread: min {min(tests):.4f}, median {statistics.median(tests):.4f}, "
         f"max (oracle) {max(tests):.4f}; {near}/{len(grid)} grid configs score within {TOLERANCE_POINTS} points "
         "of the grid best (or above it)"),
        "",
    ]
    rows = []
    for r in results:
        rows.append([
            r.seed, r.trials, r.epochs, f"{100 * r.epochs / grid_epochs:.1f}%",
            "-" if r.reached_epochs is None else r.reached_epochs,
            _pct(None if r.reached_epochs is None else r.reached_epochs / grid_epochs),
            _pct(None if r.reached_s is None else r.reached_s / grid_s),
            f"{r.selected_test:.4f}", _params(r.selected),
        ])
    lines.append(table(["seed", "trials", "sweep epochs", "sweep/grid epochs", "epochs to reach",
                        "epochs-to-reach / grid", "wall-to-reach / grid", "final selection test", "final selection"],
                       rows))
    reached = [r for r in results if r.reached_epochs is not None]
    # A seed that never got there counts with all its epochs: the mean is then a lower bound.
    fractions = [(r.reached_epochs if r.reached_epochs is not None else r.epochs) / grid_epochs for r in results]
    walls = [(r.reached_s if r.reached_s is not None else r.wall_s) / grid_s for r in results]
    bound = "" if len(reached) == len(results) else " (lower bound: unreached seeds count all their epochs)"
    mean = statistics.fmean(fractions)
    verdict = "met" if len(reached) == len(results) and mean < TARGET_FRACTION else "NOT met"
    lines += [
        "",
        f"reached within {TOLERANCE_POINTS} points of the grid best: {len(reached)}/{len(results)} seeds",
        (f"final selection (after all {plan.num_samples} trials) within {TOLERANCE_POINTS} points: "
         f"{sum(r.selected_test >= target - 1e-9 for r in results)}/{len(results)} seeds (noisy validation can "
         "move the selection to a config that scores lower on clean test)"),
        f"mean epochs-to-reach / grid epochs: {100 * mean:.1f}%{bound}; target < {100 * TARGET_FRACTION:.0f}%: {verdict}",
        f"mean wall-to-reach / grid wall: {100 * statistics.fmean(walls):.1f}%{bound}",
        (f"mean whole-sweep / grid: epochs {100 * statistics.fmean(r.epochs for r in results) / grid_epochs:.1f}%, "
         f"wall {100 * statistics.fmean(r.wall_s for r in results) / grid_s:.1f}%"),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks search_efficiency", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smaller grid (3 x 2 x 2), 6 epochs, 1 sweep seed of 8 trials: a smoke-size measurement")
    p.add_argument("--trust-modes", nargs="+", choices=TRUST_MODES, default=None, help="default: all three")
    p.add_argument("--exp-bases", nargs="+", type=float, default=None, help="default 4 8 16 32 (quick: 4 32)")
    p.add_argument("--temperatures", nargs="+", type=float, default=None, help="default 0.5 1 2 (quick: 0.5 2)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run = ASHA max_t (default 18; quick 6)")
    p.add_argument("--seeds", type=int, default=None, help="sweep (searcher) seeds 0..N-1 (default 5; quick 1)")
    p.add_argument("--num-samples", type=int, default=None, help="trials per sweep (default 24; quick 8)")
    p.add_argument("--grace-period", type=int, default=2, help="ASHA grace period in epochs (default 2)")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA reduction factor (default 3)")
    p.add_argument("--noise-rate", type=float, default=0.4, help="symmetric label-noise rate (default 0.4)")
    p.add_argument("--out", type=Path, default=None,
                   help="keep the grid and sweep directories here (default: a temporary directory, removed)")
    args = p.parse_args(argv)
    require_positive(p, args, "epochs", "seeds", "num_samples")
    return args


def plan_from(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        trust_modes=tuple(dict.fromkeys(args.trust_modes or TRUST_MODES)),
        exp_bases=tuple(dict.fromkeys(args.exp_bases or ((4.0, 32.0) if quick else (4.0, 8.0, 16.0, 32.0)))),
        temperatures=tuple(dict.fromkeys(args.temperatures or ((0.5, 2.0) if quick else (0.5, 1.0, 2.0)))),
        epochs=args.epochs or (6 if quick else 18),
        seeds=args.seeds or (1 if quick else 5),
        num_samples=args.num_samples or (8 if quick else 24),
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        noise_rate=args.noise_rate,
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    grid_size = math.prod(len(v) for v in plan.axes.values())
    print(f"search efficiency: digits, symmetric noise {plan.noise_rate:g}, ProSelfLC; grid {' x '.join(str(len(v)) for v in plan.axes.values())}"
          f" = {grid_size} configs x {plan.epochs} epochs; sweep: ASHA(grace {plan.grace_period}, "
          f"reduction {plan.reduction_factor:g}) + Optuna TPE, {plan.num_samples} trials, seeds 0..{plan.seeds - 1}",
          flush=True)
    storage = args.out or Path(tempfile.mkdtemp(prefix="proselflc-search-efficiency-"))
    try:
        with local_ray() as cpus:
            print(f"local Ray: {cpus} CPUs, 1 CPU per trial; {load()}", flush=True)
            grid, grid_s, results = measure(plan, storage.resolve())
            print(f"after: {load()}", flush=True)
        print(report(plan, grid, grid_s, results), flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(storage, ignore_errors=True)
    return 0
