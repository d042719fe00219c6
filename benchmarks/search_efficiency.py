"""Search efficiency: regret against epochs for random, TPE, CMA-ES and GP, each with and without ASHA.

A tabular benchmark in two steps, both on this machine in this run:

1. The grid, trained for real: every combination of lr x weight decay (2 decades each) x each method's
   own hyperparameters over their full ranges, per method (ProSelfLC: exp_base, logit_temperature,
   trust_mode; label smoothing: epsilon), on digits (or the DeepLoc sample) with heavy label noise (80% symmetric by default),
   every run for all epochs with the project's trainable on Ray Tune. Every run shares one training
   seed, so a configuration's learning curve is a fixed fact. The spread of the grid (the share of
   configurations within 0.5 points of the grid best) is reported first: it says how hard the problem is.
2. The searches: the platform's own sweep (`run_sweep`: one study per method, its sampler and its
   scheduler from `tuning.search`) for each searcher x scheduler x searcher seed, over the grid's ranges
   (numeric keys log-uniform between the grid's extremes, categorical keys as choices). Its trials do
   not train again: each REPLAYS the recorded curve of the grid point nearest to its suggestion (log
   distance), epoch by epoch, so ASHA and the median rule see exactly what training gave. A study runs one
   trial at a time (`per_study_concurrency: 1`), so the order of its trials, and the epochs spent before
   each selection, are exact.

Regret at a budget = grid best's clean test accuracy minus that of the configuration the sweep selects
(best last noisy val_accuracy among trials trained to full length, the platform's `select_best`) from
the trials it had finished within that many epochs, in accuracy points; budgets are % of the grid's
epochs for the study. The grid best is selected by the same rule on the grid.

    python -m benchmarks search_efficiency [--quick] [--seeds N] [--num-samples N] [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import math
import shutil
import statistics
import tempfile
import warnings
from dataclasses import dataclass, field
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
#: How close (in accuracy points) a selection must come to the grid best to count as reaching it.
TOLERANCE_POINTS = 0.5
#: The target: TPE + ASHA reaches the grid best (within the tolerance) with at most this share of its epochs.
TARGET_FRACTION = 0.10
SEARCHERS = ("random", "tpe", "cmaes", "gp")
SCHEDULERS = ("asha", "fifo")
#: Budgets (% of a study's grid epochs) at which regret is tabulated.
BUDGETS = (2, 5, 10, 15, 20, 30, 50)
#: Per method: its loss hyperparameters fixed for the benchmark, and its grid axes beyond lr x weight decay.
METHODS: dict[str, dict[str, Any]] = {
    "proselflc": {
        "fixed": {"transit_time_ratio": 0.5},
        "axes": {
            "loss.exp_base": (2.0, 8.0, 32.0),
            "loss.logit_temperature": (0.3, 0.8, 2.0),
            "loss.trust_mode": ("global", "entropy"),
        },
    },
    "labelsmoothing": {"fixed": {}, "axes": {"loss.epsilon": (0.05, 0.2, 0.8)}},
}


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run."""

    methods: tuple[str, ...]
    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]
    epochs: int
    seeds: int
    num_samples: int
    searchers: tuple[str, ...]
    schedulers: tuple[str, ...]
    grace_period: int
    reduction_factor: float
    noise_kind: str
    noise_rate: float
    method_axes: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    dataset: str = "digits"

    def axes(self, method: str) -> dict[str, tuple[Any, ...]]:
        """The grid of `method`: lr x weight decay x its own axes."""
        own = self.method_axes.get(method, METHODS[method]["axes"])
        return {"optim.lr": self.lrs, "optim.weight_decay": self.weight_decays, **own}


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


#: The DeepLoc sample shipped with the tests (400 proteins): membrane vs. soluble, a small BERT from scratch with
#: the built-in residue tokenizer, so the benchmark runs offline. Sized to take seconds per epoch on one core.
DEEPLOC_SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "deeploc_sample.csv"
DEEPLOC_BASE: dict[str, Any] = {
    **DIGITS_BASE,
    "data": {"name": "deeploc", "root": str(DEEPLOC_SAMPLE), "task": "membrane", "tokenizer": None,
             "max_length": 128, "test_fraction": 0.25, "val_fraction": 0.15},
    "model": {"name": "protein_transformer", "pretrained": None, "hidden_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 128, "dropout": 0.1},
    "train": {**DIGITS_BASE["train"], "batch_size": 16},
}
BASES = {"digits": DIGITS_BASE, "deeploc": DEEPLOC_BASE}


def _base(plan: Plan) -> dict[str, Any]:
    base = BASES[plan.dataset]
    return {**base, "noise": {"kind": plan.noise_kind, "rate": plan.noise_rate},
            "train": {**base["train"], "epochs": plan.epochs}}


def sweep_raw(plan: Plan, searcher: str, scheduler: str, seed: int, storage: Path) -> dict[str, Any]:
    """The sweep file (as a dict) of one searcher x scheduler x seed: one study per method, no final re-runs."""
    methods = {}
    for method in plan.methods:
        axes = plan.axes(method)
        fixed = {k.split(".", 1)[1]: v[0] for k, v in axes.items() if len(v) == 1 and k.startswith("loss.")}
        methods[method] = {"hyperparameters": {**METHODS[method]["fixed"], **fixed}, "search": _search_space(axes)}
    schedule: dict[str, Any] = {"name": scheduler}
    if scheduler == "asha":
        schedule.update(grace_period=plan.grace_period, reduction_factor=plan.reduction_factor)
    return {
        "name": f"{searcher}-{scheduler}-seed{seed}",
        "base": _base(plan),
        "noise": {"kind": plan.noise_kind, "rates": [plan.noise_rate]},
        "methods": methods,
        "metric": METRIC,
        "mode": MODE,
        "num_samples": plan.num_samples,
        "searcher": {"name": searcher, "seed": seed},
        "scheduler": schedule,
        "resources": {"cpu": 1, "gpu": 0},
        "per_study_concurrency": 1,  # one trial at a time per study: its order of trials is exact
        "storage_path": str(storage),
        "final_seeds": 0,
        "checkpoint_every": 0,
        "max_failures": 0,
    }


# -- step 1: the grid, trained -------------------------------------------------------------------------


def run_grid(plan: Plan, storage: Path) -> tuple[dict[str, list[TrialRecord]], float]:
    """Every grid point of every method, full length, with the platform's trainable; ({method: trials}, seconds)."""
    from ray import tune

    from proselflc import data as data_lib
    from proselflc.trainables import SharedDataset, make_trainable
    from proselflc.tuning import build_sweep_config

    sweep = build_sweep_config(sweep_raw(plan, "random", "fifo", 0, storage))
    grids: dict[str, list[TrialRecord]] = {}
    with Stopwatch() as watch:
        shared = SharedDataset.put(data_lib.load(sweep.base.data))
        for method in sweep.methods:
            axes = plan.axes(method.name)
            base = sweep.study_config(sweep.noise.rates[0], method)
            tuner = tune.Tuner(
                make_trainable({BENCH_STUDY: base}, shared, cpu=1),
                param_space=one_study({key: tune.grid_search(list(values)) for key, values in axes.items()}),
                tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, reuse_actors=True),
                # A worker lost to the shared machine (OOM, a stray `ray stop`) is retried: the grid must be whole.
                run_config=tune.RunConfig(name=f"grid-{method.name}", storage_path=str(storage), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=2)),
            )
            tuner.fit()
            grids[method.name] = read_experiment(storage / f"grid-{method.name}")
    return grids, watch.seconds


def grid_best(trials: list[TrialRecord], max_t: int) -> TrialRecord:
    """The grid point the platform's rule selects: best last val_accuracy (first in grid order on ties)."""
    from proselflc.tuning import select_best

    best = select_best(((t.params, t.last) for t in trials if not t.errored), METRIC, MODE, max_t)
    if best is None:
        raise RuntimeError(f"no grid trial reported a finite {METRIC}; see the error.txt files of the grid")
    return next(t for t in trials if t.params == best[0])


# -- step 2: the searches, replaying the grid ----------------------------------------------------------


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


def replay_trial(
    params: dict[str, Any],
    *,
    base: dict[str, Any],
    curves: dict[str, dict[tuple[Any, ...], list[dict[str, Any]]]],
    axes: dict[str, dict[str, tuple[Any, ...]]],
    **_: Any,
) -> None:
    """A sweep trial that reports the recorded curve of its nearest grid point instead of training."""
    from ray import tune

    method = base["loss"]["name"]
    for row in curves[method][nearest(params, axes[method])]:
        tune.report(dict(row))


_REPLAYED = ("epoch", "val_accuracy", "test_accuracy", "diverged")


def curves_of(plan: Plan, grids: dict[str, list[TrialRecord]]) -> dict[str, dict[tuple[Any, ...], list[dict[str, Any]]]]:
    """{method: {grid point: its reported rows (the keys selection and schedulers read)}}."""
    out = {}
    for method, trials in grids.items():
        keys = tuple(plan.axes(method))
        # An errored grid point has no curve: a suggestion replaying it errors, as the real trial would have.
        out[method] = {tuple(t.params[k] for k in keys): [{k: r[k] for k in _REPLAYED if k in r} for r in t.rows]
                       for t in trials if not t.errored}
    return out


def run_search(plan: Plan, searcher: str, scheduler: str, seed: int, storage: Path,
               curves: dict[str, Any]) -> dict[str, list[TrialRecord]]:
    """One sweep replaying the grid; {method: its search trials in the order they were created}."""
    from proselflc.sweep_contract import EXPERIMENT_DIR, trial_dirname
    from proselflc.tuning import build_sweep_config, run_sweep
    from proselflc.tuning.sweep import study_key

    sweep = build_sweep_config(sweep_raw(plan, searcher, scheduler, seed, storage))
    axes = {method: plan.axes(method) for method in plan.methods}
    run = functools.partial(replay_trial, curves=curves, axes=axes)
    sweep_dir = run_sweep(sweep, log=quiet, trial_function=run)
    names = {d.name for d in (sweep_dir / EXPERIMENT_DIR).iterdir()}
    by_method: dict[str, list[TrialRecord]] = {m: [] for m in plan.methods}
    for trial in read_experiment(sweep_dir / EXPERIMENT_DIR):
        for method in plan.methods:
            if trial_dirname(study_key(sweep, sweep.noise.rates[0], method), "search", trial.trial_id) in names:
                by_method[method].append(trial)
    # Trial ids count up in creation order, and a study runs one trial at a time: this is its order of trials.
    return {m: sorted(ts, key=lambda t: t.trial_id) for m, ts in by_method.items()}


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


# -- report --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Every search's regret steps: {(searcher, scheduler): {method: [steps per seed]}}."""

    steps: dict[tuple[str, str], dict[str, list[list[tuple[int, float]]]]] = field(default_factory=dict)
    spent: dict[tuple[str, str], dict[str, list[int]]] = field(default_factory=dict)


def measure(plan: Plan, storage: Path, log: Any = print) -> tuple[dict[str, list[TrialRecord]], float, Outcome]:
    grids, grid_s = run_grid(plan, storage)
    log(f"grid trained in {grid_s:.0f} s; searching ({len(plan.searchers) * len(plan.schedulers) * plan.seeds} "
        f"sweeps)")
    curves = curves_of(plan, grids)
    best = {m: grid_best(grids[m], plan.epochs).last["test_accuracy"] for m in plan.methods}
    outcome = Outcome()
    for searcher in plan.searchers:
        for scheduler in plan.schedulers:
            with Stopwatch() as watch:
                for seed in range(plan.seeds):
                    trials = run_search(plan, searcher, scheduler, seed, storage / "sweeps", curves)
                    for method in plan.methods:
                        outcome.steps.setdefault((searcher, scheduler), {}).setdefault(method, []).append(
                            regret_steps(trials[method], plan.epochs, best[method]))
                        outcome.spent.setdefault((searcher, scheduler), {}).setdefault(method, []).append(
                            sum(t.epochs for t in trials[method]))
            log(f"  {searcher} + {scheduler}: {plan.seeds} seeds in {watch.seconds:.0f} s")
    return grids, grid_s, outcome


def _params(params: dict[str, Any]) -> str:
    short = {"optim.lr": "lr", "optim.weight_decay": "wd", "loss.trust_mode": "mode", "loss.exp_base": "B",
             "loss.logit_temperature": "T", "loss.epsilon": "eps"}
    return ", ".join(f"{short.get(k, k)}={v:.3g}" if isinstance(v, float) else f"{short.get(k, k)}={v}"
                     for k, v in params.items())


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _points(value: float) -> str:
    return "none yet" if math.isinf(value) else f"{value:.2f}"


def grid_lines(plan: Plan, grids: dict[str, list[TrialRecord]]) -> list[str]:
    lines = []
    for method in plan.methods:
        trials = grids[method]
        best = grid_best(trials, plan.epochs)
        tests = [t.last.get("test_accuracy", math.nan) for t in trials]
        finite = [x for x in tests if math.isfinite(x)]
        near = sum(x >= best.last["test_accuracy"] - TOLERANCE_POINTS / 100 - 1e-9 for x in finite)
        diverged = sum(bool(t.last.get("diverged")) for t in trials)
        errored = sum(t.errored for t in trials)
        lines += [
            (f"{method}: grid {' x '.join(str(len(v)) for v in plan.axes(method).values())} = {len(trials)} configs x "
            f"{plan.epochs} epochs = {len(trials) * plan.epochs} epochs"),
            f"  grid best (last-epoch noisy {METRIC}): {_params(best.params)}: clean test {best.last['test_accuracy']:.4f}",
            (f"  clean test over the grid: min {min(finite):.4f}, median {statistics.median(finite):.4f}, max (oracle) "
            f"{max(finite):.4f}; {diverged} diverged, {errored} errored"),
            (f"  spread: {near}/{len(trials)} configs ({100 * near / len(trials):.0f}%) score within "
            f"{TOLERANCE_POINTS} points of the grid best (or above it)"),
        ]
    return lines


def report(plan: Plan, grids: dict[str, list[TrialRecord]], grid_s: float, outcome: Outcome) -> str:
    """The printed result: the grid's spread first, then per method the median regret at each budget."""
    lines = [*grid_lines(plan, grids), f"grid wall time: {grid_s:.0f} s", ""]
    verdicts = []
    for method in plan.methods:
        grid_epochs = len(grids[method]) * plan.epochs
        budgets = [b for b in BUDGETS if b * grid_epochs / 100 >= plan.epochs] or [BUDGETS[-1]]
        rows = []
        medians: dict[tuple[str, str], list[float]] = {}
        for (searcher, scheduler), per_method in outcome.steps.items():
            runs = per_method[method]
            medians[(searcher, scheduler)] = [_median([regret_at(s, b * grid_epochs / 100) for s in runs])
                                              for b in budgets]
            reach = [epochs_to_reach(s) for s in runs]
            reach_pct = sorted(math.inf if r is None else 100 * r / grid_epochs for r in reach)
            median_reach = _median(reach_pct)
            spent = _median([100 * e / grid_epochs for e in outcome.spent[(searcher, scheduler)][method]])
            final = _median([s[-1][1] if s else math.inf for s in runs])
            rows.append([f"{searcher} + {scheduler}", *(_points(m) for m in medians[(searcher, scheduler)]),
                         _points(final), f"{spent:.1f}%",
                         f"{sum(r is not None for r in reach)}/{len(runs)}",
                         "not reached" if math.isinf(median_reach) else f"{median_reach:.1f}%"])
        lines += [
            (f"{method}: median regret over {plan.seeds} seed(s) (points of clean test accuracy below the grid best; "
            "budget = % of the grid's epochs)"),
            table(["searcher + scheduler", *(f"{b}%" for b in budgets), "after all trials", "epochs spent",
                   f"seeds within {TOLERANCE_POINTS}", "median epochs to reach"], rows),
            "",
        ]
        verdicts += _verdicts(method, budgets, medians, outcome, grid_epochs)
    return "\n".join([*lines, *verdicts])


def _verdicts(method: str, budgets: list[int], medians: dict[tuple[str, str], list[float]], outcome: Outcome,
              grid_epochs: int) -> list[str]:
    out = []
    tpe, rnd = ("tpe", "asha"), ("random", "asha")
    if tpe in outcome.steps:
        reach = sorted(math.inf if r is None else r / grid_epochs
                       for r in map(epochs_to_reach, outcome.steps[tpe][method]))
        median = _median(reach)
        met = median <= TARGET_FRACTION
        out.append(f"{method}: TPE + ASHA within {TOLERANCE_POINTS} points of the grid best with <= "
                   f"{100 * TARGET_FRACTION:.0f}% of the grid's epochs on the median seed: "
                   f"{'met' if met else 'NOT met'} ({'never' if math.isinf(median) else f'{100 * median:.1f}%'})")
    if tpe in medians and rnd in medians:
        worse = [b for b, t, r in zip(budgets, medians[tpe], medians[rnd], strict=True) if not t < r]
        out.append(f"{method}: TPE + ASHA lower median regret than random + ASHA at every budget: "
                   + ("met" if not worse else f"NOT met (not lower at {', '.join(f'{b}%' for b in worse)})"))
    return out


def plot(plan: Plan, grids: dict[str, list[TrialRecord]], outcome: Outcome, path: Path) -> None:
    """Median regret (band: quartiles over seeds) against % of the grid's epochs, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(plan.methods), figsize=(6 * len(plan.methods), 4.2), squeeze=False)
    for ax, method in zip(axes[0], plan.methods, strict=True):
        grid_epochs = len(grids[method]) * plan.epochs
        xs = np.linspace(0.5, 60, 240)
        for (searcher, scheduler), per_method in sorted(outcome.steps.items()):
            values = np.array([[regret_at(s, x * grid_epochs / 100) for x in xs] for s in per_method[method]])
            values[np.isinf(values)] = np.nan  # nothing selected yet
            with np.errstate(all="ignore"), warnings.catch_warnings():  # all-NaN columns: no selection yet
                warnings.simplefilter("ignore", RuntimeWarning)
                mid = np.nanmedian(values, axis=0) if values.size else xs * np.nan
                low, high = np.nanpercentile(values, 25, axis=0), np.nanpercentile(values, 75, axis=0)
            style = "-" if scheduler == "asha" else "--"
            line, = ax.plot(xs, mid, style, label=f"{searcher} + {scheduler}")
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.12)
        ax.axhline(TOLERANCE_POINTS, color="grey", lw=0.8, ls=":")
        ax.set(title=f"{method}, {plan.noise_kind} {plan.noise_rate:g} noise, {plan.dataset}", xlabel="epochs spent (% of grid)",
               ylabel="regret (clean test points)")
        ax.set_ylim(bottom=-1)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks search_efficiency", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="ProSelfLC only, a 2 x 2 x 2 x 1 x 2 grid, 4 epochs, 1 seed of 6 trials: a smoke-size run")
    p.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=None, help="default: all (quick: proselflc)")
    p.add_argument("--searchers", nargs="+", choices=SEARCHERS, default=None, help="default: all four")
    p.add_argument("--schedulers", nargs="+", choices=SCHEDULERS, default=None, help="default: asha and fifo")
    p.add_argument("--lrs", nargs="+", type=float, default=None, help="grid lr values (default 0.003 0.03 0.3)")
    p.add_argument("--weight-decays", nargs="+", type=float, default=None,
                   help="grid weight decays (default 1e-5 1e-4 1e-3)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run = max_t (default 18; quick 4)")
    p.add_argument("--seeds", type=int, default=None, help="searcher seeds 0..N-1 (default 10; quick 1)")
    p.add_argument("--num-samples", type=int, default=None, help="trials per study (default 24; quick 6)")
    p.add_argument("--grace-period", type=int, default=2, help="ASHA grace period in epochs (default 2)")
    p.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA reduction factor (default 3)")
    p.add_argument("--dataset", choices=sorted(BASES), default="digits",
                   help="digits (default) or deeploc: the 400-protein DeepLoc sample, membrane vs. soluble")
    p.add_argument("--noise-kind", default="symmetric", help="label-noise kind (default symmetric)")
    p.add_argument("--noise-rate", type=float, default=0.8, help="label-noise rate (default 0.8)")
    p.add_argument("--plot", type=Path, default=None, help="write the regret plot here (PNG)")
    p.add_argument("--out", type=Path, default=None,
                   help="keep the grid and sweep directories here (default: a temporary directory, removed)")
    args = p.parse_args(argv)
    require_positive(p, args, "epochs", "seeds", "num_samples")
    return args


def plan_from(args: argparse.Namespace) -> Plan:
    quick = args.quick
    quick_axes = {"proselflc": {"loss.exp_base": (2.0, 32.0), "loss.logit_temperature": (0.8,),
                                "loss.trust_mode": ("global", "entropy")},
                  "labelsmoothing": {"loss.epsilon": (0.05, 0.8)}}
    return Plan(
        methods=tuple(args.methods or (("proselflc",) if quick else tuple(METHODS))),
        lrs=tuple(args.lrs or ((0.01, 0.1) if quick else (0.003, 0.03, 0.3))),
        weight_decays=tuple(args.weight_decays or ((1e-5, 1e-3) if quick else (1e-5, 1e-4, 1e-3))),
        epochs=args.epochs or (4 if quick else 18),
        seeds=args.seeds or (1 if quick else 10),
        num_samples=args.num_samples or (6 if quick else 24),
        searchers=tuple(args.searchers or SEARCHERS),
        schedulers=tuple(args.schedulers or SCHEDULERS),
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        noise_kind=args.noise_kind,
        noise_rate=args.noise_rate,
        method_axes=quick_axes if quick else {},
        dataset=args.dataset,
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    print(f"search efficiency: {plan.dataset}, {plan.noise_kind} noise {plan.noise_rate:g}, methods {', '.join(plan.methods)}; "
          f"{plan.epochs} epochs per run; searchers {', '.join(plan.searchers)} x schedulers "
          f"{', '.join(plan.schedulers)} (ASHA grace {plan.grace_period}, reduction {plan.reduction_factor:g}), "
          f"{plan.num_samples} trials per study, seeds 0..{plan.seeds - 1}", flush=True)
    storage = args.out or Path(tempfile.mkdtemp(prefix="proselflc-search-efficiency-"))
    try:
        with local_ray() as cpus:
            print(f"local Ray: {cpus} CPUs, 1 CPU per trial; {load()}", flush=True)
            grids, grid_s, outcome = measure(plan, storage.resolve(), log=lambda m: print(m, flush=True))
            print(f"after: {load()}", flush=True)
        print(report(plan, grids, grid_s, outcome), flush=True)
        if args.plot is not None:
            plot(plan, grids, outcome, args.plot)
            print(f"plot: {args.plot}", flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(storage, ignore_errors=True)
    return 0
