"""Selection certainty: is the paired bootstrap calibrated, and does re-seeding tied configs beat noisy val?

In the quickstart's memorisation regime (digits, MLP-512, no weight decay, lr 0.2, 60 epochs) a small grid
per study (cross entropy: lr; label smoothing: epsilon; ProSelfLC: transit time x trust mode) is trained at
symmetric 20/40/60/80% and pair-flip 45% noise, with several training seeds. A seed is a whole replicate:
its own noise draw, validation split and initialisation, so the configs of one (setting, seed) share one
noisy validation split, as the search trials of one study do. Every run is the project's Engine,
in-process (no Ray), one torch thread; each run's per-example validation and test correctness is cached
on disk (`--cache`, gitignored under results/), so a rerun only trains what is missing.

It reports:

(a) Calibration. For every (setting, method, seed) the chosen config (best noisy val, the platform's
    `select_best`) against its runner-up, and for more pairs every two configs of a (setting, seed) (all
    methods share the split): P(val-better beats val-worse) from `selection_certainty.paired_bootstrap`,
    and whether the val-better one has the higher clean test accuracy (a tie counts half). A reliability
    table by certainty bin; the target: of selections reported more than 90% sure, >= 80% beat their
    runner-up on clean test.
(b) Regret against the clean-test oracle, per config quality Q(c) = its mean clean test accuracy over
    every seed: Q(oracle) - Q(chosen), in points, median and mean over (setting, method, seed), for
    - `noisy_val`: one run per config, the best noisy val (what `proselflc tune` selects);
    - `reseed_tied`: the configs statistically tied with that choice (the choice is less than 90% sure to
      beat them) and the choice itself get `--extra-seeds` more seeds (the grid's next seeds, each
      replicate in turn), and the best mean noisy val over its seeds wins
      (`selection_certainty.reseed_tied_choice`); the extra runs it spent are counted.

    python -m benchmarks selection_certainty [--quick] [--seeds N] [--extra-seeds N] [--jobs N] [--settings S,..]
                                             [--cache DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import load, require_positive, table
from proselflc import selection_certainty as sc

#: The quickstart's regime (configs/quickstart.yaml), without search: the grid below fills the loss in.
BASE: dict[str, Any] = {
    "name": "selection-certainty",
    "data": {"name": "digits", "val_fraction": 0.15},
    "model": {"name": "mlp", "hidden": 512},
    "optim": {"lr": 0.2, "momentum": 0.9, "weight_decay": 0.0, "schedule": "multistep", "milestones": [45, 55],
              "gamma": 0.1},
    "train": {"epochs": 60, "batch_size": 64, "seed": 0, "threads": 1, "progress": False, "eval_every": 60},
}
SETTINGS: tuple[tuple[str, float], ...] = (
    ("symmetric", 0.2), ("symmetric", 0.4), ("symmetric", 0.6), ("symmetric", 0.8), ("pairflip", 0.45),
)
#: Per method: its grid (a few configs, each a dict of dotted overrides).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "crossentropy": [{"optim.lr": lr} for lr in (0.05, 0.1, 0.3)],
    "labelsmoothing": [{"loss.epsilon": eps} for eps in (0.1, 0.4, 0.7)],
    "proselflc": [
        {"loss.transit_time_ratio": b, "loss.trust_mode": mode}
        for b, mode in ((0.1, "global"), (0.3, "entropy"), (0.5, "global"))
    ],
}
#: Certainty bins of the reliability table (lower edges; the last bin includes 1).
BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
SURE = 0.9
TARGET = 0.8
RESAMPLES = 4000


@dataclass(frozen=True)
class Run:
    """One trained config at one seed: its per-example correctness on the noisy val split and the clean test set."""

    setting: str
    method: str
    config: int
    seed: int
    val: np.ndarray
    test: np.ndarray

    @property
    def val_accuracy(self) -> float:
        return float(self.val.mean())

    @property
    def test_accuracy(self) -> float:
        return float(self.test.mean())


@dataclass(frozen=True)
class Plan:
    settings: tuple[tuple[str, float], ...]
    grids: dict[str, list[dict[str, Any]]]
    seeds: int
    extra_seeds: int
    epochs: int
    hidden: int
    limit: int | None
    jobs: int = 1


def plan_for(args: argparse.Namespace) -> Plan:
    if args.quick:
        grids = {m: g[:2] for m, g in GRIDS.items() if m != "proselflc"}
        return Plan((("symmetric", 0.4),), grids, seeds=args.seeds or 2, extra_seeds=1, epochs=3, hidden=32,
                    limit=600, jobs=args.jobs)
    seeds = args.seeds or 4
    extra = min(2, seeds - 1) if args.extra_seeds is None else args.extra_seeds
    if extra >= seeds:
        raise SystemExit(f"--extra-seeds {extra} must be below --seeds {seeds} (they are the other seeds)")
    return Plan(SETTINGS, GRIDS, seeds=seeds, extra_seeds=extra, epochs=60, hidden=512, limit=None,
                jobs=args.jobs)


def run_config(kind: str, rate: float, method: str, params: dict[str, Any], seed: int, plan: Plan) -> dict[str, Any]:
    from proselflc.config import build_run_config
    from proselflc.search_spaces import apply_params
    from proselflc.training import Engine

    base = json.loads(json.dumps(BASE))
    base["noise"] = {"kind": kind, "rate": rate}
    base["loss"] = {"name": method}
    base["model"]["hidden"] = plan.hidden
    base["train"].update(epochs=plan.epochs, seed=seed, eval_every=plan.epochs)
    base["optim"]["milestones"] = [m for m in (45, 55) if m < plan.epochs] or [plan.epochs]
    if plan.limit:
        base["data"]["limit"] = plan.limit
    engine = Engine(build_run_config(apply_params(base, params), source="selection_certainty benchmark"))
    for _ in engine.epochs():
        pass
    assert engine.val_correct is not None and engine.test_correct is not None
    return {"val": engine.val_correct, "test": engine.test_correct}


def _tag(setting: str, method: str, index: int, seed: int, plan: Plan) -> str:
    return f"{setting}_{method}_{index}_s{seed}_e{plan.epochs}_h{plan.hidden}_l{plan.limit or 0}"


def _train_into(path: Path, kind: str, rate: float, method: str, params: dict[str, Any], seed: int, plan: Plan) -> str:
    """Train one run and write its correctness to `path` (atomically); a line for the log."""
    out = run_config(kind, rate, method, params, seed, plan)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, val=out["val"], test=out["test"])
    tmp.rename(path)
    return f"{path.stem}: val {out['val'].mean():.3f} test {out['test'].mean():.3f}"


def grid(plan: Plan, cache: Path, log: Any = print) -> list[Run]:
    """Every (setting, method, config, seed) of the plan, trained (`plan.jobs` processes) or read from `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    # Seed after seed: a run cut short still has every setting for the seeds it finished (--seeds N reads them).
    todo = [((kind, rate), m, i, seed) for seed in range(plan.seeds) for kind, rate in plan.settings
            for m, g in plan.grids.items() for i in range(len(g))]
    path = lambda s, m, i, seed: cache / f"{_tag(sc.setting_name(*s), m, i, seed, plan)}.npz"
    missing = [item for item in todo if not path(*item).is_file()]
    if missing:
        log(f"training {len(missing)} of {len(todo)} runs ({plan.jobs} process(es))", flush=True)
        jobs = [(path(*item), *item[0], item[1], plan.grids[item[1]][item[2]], item[3], plan) for item in missing]
        if plan.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(plan.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                for n, line in enumerate(pool.map(_train_into, *zip(*jobs)), 1):
                    log(f"  [{n}/{len(jobs)}] {line}", flush=True)
        else:
            for n, job in enumerate(jobs, 1):
                log(f"  [{n}/{len(jobs)}] {_train_into(*job)}", flush=True)
    runs = []
    for item in todo:
        with np.load(path(*item)) as data:
            runs.append(Run(sc.setting_name(*item[0]), item[1], item[2], item[3],
                            data["val"].astype(bool), data["test"].astype(bool)))
    return runs


def _beats(a: Run, b: Run) -> float:
    """1 when a has the higher clean test accuracy than b, 0.5 on a tie, else 0."""
    da, db = int(a.test.sum()), int(b.test.sum())
    return 1.0 if da > db else 0.5 if da == db else 0.0


def _ordered(runs: list[Run]) -> list[Run]:
    """Runs of one split, best noisy val first (ties: the grid's order, as the platform's creation order)."""
    return sorted(runs, key=lambda r: (-int(r.val.sum()), r.method, r.config))


def calibration_pairs(runs: list[Run]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(certainty, outcome) for every study's chosen-vs-runner-up, and for every two configs sharing a split."""
    chosen_pairs, all_pairs = [], []
    by_split: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        by_split.setdefault((run.setting, run.seed), []).append(run)
    for split_runs in by_split.values():
        for method in sorted({r.method for r in split_runs}):
            ordered = _ordered([r for r in split_runs if r.method == method])
            if len(ordered) >= 2:
                p = sc.paired_bootstrap(ordered[0].val, ordered[1].val, RESAMPLES)
                chosen_pairs.append((p, _beats(ordered[0], ordered[1])))
        for a, b in itertools.combinations(_ordered(split_runs), 2):
            all_pairs.append((sc.paired_bootstrap(a.val, b.val, RESAMPLES), _beats(a, b)))
    return chosen_pairs, all_pairs


def reliability(pairs: list[tuple[float, float]]) -> list[list[str]]:
    rows = []
    edges = [*BINS, 1.0000001]
    for low, high in itertools.pairwise(edges):
        inside = [o for p, o in pairs if low <= p < high]
        label = f"[{low:.2f}, {min(high, 1.0):.2f}{']' if high > 1 else ')'}"
        mean_p = statistics.fmean(p for p, _ in pairs if low <= p < high) if inside else float("nan")
        rows.append([label, str(len(inside)), f"{mean_p:.3f}" if inside else "-",
                     f"{statistics.fmean(inside):.3f}" if inside else "-"])
    return rows


def sure_rate(pairs: list[tuple[float, float]]) -> tuple[int, float]:
    sure = [o for p, o in pairs if p > SURE]
    return len(sure), (statistics.fmean(sure) if sure else float("nan"))


def regrets(runs: list[Run], plan: Plan) -> dict[str, dict[str, list[float]]]:
    """Per setting: regret (points) of noisy_val and reseed_tied per (method, seed), and reseed_tied's extra runs."""
    quality: dict[tuple[str, str, int], float] = {}
    table_: dict[tuple[str, str, int, int], Run] = {}
    for run in runs:
        table_[(run.setting, run.method, run.config, run.seed)] = run
    for (setting, method, config, _seed) in table_:
        quality[(setting, method, config)] = statistics.fmean(
            table_[(setting, method, config, s)].test_accuracy for s in range(plan.seeds)
        )
    out: dict[str, dict[str, list[float]]] = {}
    for (kind, rate) in plan.settings:
        setting = sc.setting_name(kind, rate)
        rec = out.setdefault(setting, {"noisy_val": [], "reseed_tied": [], "extra_runs": []})
        for method, configs in plan.grids.items():
            best_q = max(quality[(setting, method, c)] for c in range(len(configs)))
            for seed in range(plan.seeds):
                first = [table_[(setting, method, c, seed)] for c in range(len(configs))]
                chosen = _ordered(first)[0]
                rec["noisy_val"].append(100 * (best_q - quality[(setting, method, chosen.config)]))
                extra = [(seed + k + 1) % plan.seeds for k in range(plan.extra_seeds)]
                pick, spent = sc.reseed_tied_choice(
                    [r.val for r in first],
                    lambda c, k, setting=setting, method=method, extra=extra: table_[(setting, method, c, extra[k])].val,
                    extra_seeds=len(extra), threshold=SURE, resamples=RESAMPLES,
                )
                rec["reseed_tied"].append(100 * (best_q - quality[(setting, method, pick)]))
                rec["extra_runs"].append(float(spent))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks selection_certainty", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one setting, 2 configs, 3 epochs")
    parser.add_argument("--seeds", type=int, default=None, help="selection seeds (default 4; quick 2)")
    parser.add_argument("--extra-seeds", type=int, default=None,
                        help="seeds reseed_tied adds to tied configs: the next ones of the --seeds (default "
                        "min(2, seeds - 1))")
    parser.add_argument("--jobs", type=int, default=1, help="training processes (one torch thread each)")
    parser.add_argument("--settings", default=None,
                        help="only these noise settings, comma-separated (e.g. symmetric-0.2,pairflip-0.45)")
    parser.add_argument("--cache", type=Path, default=Path("results/bench_selection_certainty"),
                        help="where trained runs are kept (gitignored)")
    args = parser.parse_args(argv)
    require_positive(parser, args, "seeds", "extra_seeds", "jobs")
    plan = plan_for(args)
    if args.settings:
        wanted = args.settings.split(",")
        unknown = [w for w in wanted if w not in {sc.setting_name(*x) for x in plan.settings}]
        if unknown:
            parser.error(f"--settings: unknown {unknown}; valid: {[sc.setting_name(*x) for x in plan.settings]}")
        plan = replace(plan, settings=tuple(x for x in plan.settings if sc.setting_name(*x) in wanted))
    print(f"selection_certainty: {len(plan.settings)} settings x {sum(map(len, plan.grids.values()))} configs x "
          f"{plan.seeds} seeds, {plan.epochs} epochs; {load()}", flush=True)
    runs = grid(plan, args.cache)

    chosen_pairs, all_pairs = calibration_pairs(runs)
    print("\n(a) calibration of the paired bootstrap: P(val-better beats val-worse) vs how often it does on clean test")
    for name, pairs in (("chosen vs runner-up, per study", chosen_pairs), ("every two configs of a split", all_pairs)):
        n_sure, rate = sure_rate(pairs)
        print(f"\n{name}: {len(pairs)} pairs; reported > {SURE:.0%} sure: {n_sure}, of which {rate:.1%} beat on "
              f"clean test (target >= {TARGET:.0%})")
        print(table(["certainty", "pairs", "mean certainty", "beat on clean test"], reliability(pairs)))

    print("\n(b) regret against the clean-test oracle, points (config quality = mean clean test over all seeds)")
    rows = []
    for setting, rec in regrets(runs, plan).items():
        kind, rate = sc.parse_setting(setting)
        kappa = sc.kappa(sc.transition_matrix(kind, rate, 10))
        rows.append([setting, f"{kappa:.3f}", f"{statistics.median(rec['noisy_val']):.2f}",
                     f"{statistics.fmean(rec['noisy_val']):.2f}", f"{statistics.median(rec['reseed_tied']):.2f}",
                     f"{statistics.fmean(rec['reseed_tied']):.2f}", f"{statistics.fmean(rec['extra_runs']):.1f}"])
    print(table(["setting", "kappa", "noisy_val median", "noisy_val mean", "reseed_tied median", "reseed_tied mean",
                 "extra runs / study"], rows))
    return 0
