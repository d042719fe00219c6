"""Tuning overhead: what running a trial on local Ray costs next to calling the Engine in a plain loop.

Three measurements, each a ratio of two timings taken in this run:

1. Per-trial cost of a trial that trains almost nothing (1 epoch on 64 digits examples): wall time of
   N trials through Ray Tune (one at a time) over N plain `Engine(...).epochs()` calls, for the
   platform's trainable (`proselflc.trainables.make_trainable`: dataset shared through the object store,
   `reuse_actors=True`, checkpoint at the trial's last epoch) and for variants that each change one
   thing: no actor reuse; the dataset loaded inside every trial instead of shared; no checkpoint at the
   end; and a trainable that trains nothing (Ray Tune's own floor). A driver-side callback clocks trial
   completions, splitting each Tuner's wall time into a steady cost per trial (first to last completion)
   and a start-up cost per Tuner (mostly the trial actor's worker importing torch and Ray Tune).
2. Reporting and checkpoint frequency on a full-size search trial (the search-efficiency benchmark's:
   all of digits, 18 epochs): Ray over plain at `train.eval_every` = 1 (a report per epoch, what ASHA
   needs for early stopping) vs. one report per trial, and with a checkpoint every epoch.
3. Parallel efficiency: throughput (trials/s) of a sweep of full-size trials with max_concurrent_trials
   = all cores over 1, divided by the number of cores (1.0 = perfect scaling).

    python -m benchmarks tuning_overhead [--quick] [--trials N] [--full-trials M] [--epochs E]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from benchmarks._harness import (
    BENCH_STUDY,
    DIGITS_BASE,
    load,
    local_ray,
    one_study,
    read_experiment,
    require_positive,
    table,
)

#: The trial that trains almost nothing: one epoch on the first 64 training examples.
TINY_LIMIT = 64


def tiny_base() -> dict[str, Any]:
    return {**DIGITS_BASE, "data": {**DIGITS_BASE["data"], "limit": TINY_LIMIT},
            "train": {**DIGITS_BASE["train"], "epochs": 1, "threads": 1}}


def full_base(epochs: int, eval_every: int = 1) -> dict[str, Any]:
    return {**DIGITS_BASE, "train": {**DIGITS_BASE["train"], "epochs": epochs, "eval_every": eval_every,
                                     "threads": 1}}


class LoadPerTrial:
    """Stands in for `SharedDataset` without the object store: every trial loads the dataset itself."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base

    def get(self) -> Any:
        from proselflc import data as data_lib
        from proselflc.config import build_run_config

        return data_lib.load(build_run_config(self.base).data)


def train_without_checkpoint(config: dict[str, Any], *, base: dict[str, Any], shared: Any, **_: Any) -> None:
    """The platform's `train_engine` minus its checkpoint at the last epoch: every row reported plainly."""
    from proselflc.config import build_run_config
    from proselflc.search_spaces import apply_params
    from proselflc.training import Engine

    cfg = build_run_config(apply_params(base, config), source="trial config")
    for row in Engine(cfg, dataset=shared.get()).epochs():
        tune.report(row)


def train_nothing(config: dict[str, Any]) -> None:
    """Ray Tune's floor: a trial that imports nothing heavy (no torch) and reports one row."""
    tune.report({"epoch": 1, "val_accuracy": 0.0})


def plain_loop(base: dict[str, Any], n: int) -> float:
    """Median seconds of one run of `base` through the Engine in-process (train.seed 0..n-1), after a warm-up.

    The median, not the mean: on a shared machine one run caught by another process's burst would
    otherwise move every ratio.
    """
    import torch

    from proselflc import data as data_lib
    from proselflc.config import build_run_config
    from proselflc.search_spaces import apply_params
    from proselflc.training import Engine

    threads = torch.get_num_threads()
    dataset = data_lib.load(build_run_config(base).data)

    def run(seed: int) -> float:
        start = time.perf_counter()
        cfg = build_run_config(apply_params(base, {"train.seed": seed}), source="plain run")
        for _ in Engine(cfg, dataset=dataset).epochs():
            pass
        return time.perf_counter() - start

    try:
        run(0)  # warms up torch (allocator, kernels); not timed
        return statistics.median(run(seed) for seed in range(n))
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class RayVariant:
    """How the trials of one Ray measurement are run."""

    name: str
    trainable: Callable[[dict[str, Any]], Any]
    reuse_actors: bool = True


class Completions(tune.Callback):
    """Driver-side clock of each trial's completion: Ray's own result stamps are whole seconds."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.times.append(time.perf_counter())


@dataclass(frozen=True)
class Fit:
    """One Tuner's timing: wall seconds, and the steady cost per trial once its actors are up."""

    trials: int
    wall: float
    steady: float | None
    exp_dir: Path

    @property
    def amortised(self) -> float:
        return self.wall / self.trials

    @property
    def startup(self) -> float | None:
        """Seconds the Tuner costs beyond `steady` per trial: actor start-up (imports), Tuner set-up, teardown."""
        return None if self.steady is None else self.wall - self.trials * self.steady


def ray_fit(
    variant: RayVariant, n: int, concurrency: int, storage: Path, extra: dict[str, Any] | None = None
) -> Fit:
    """One Tuner running n trials (train.seed 0..n-1, times each `extra` grid), at most `concurrency` at once.

    The steady cost per trial is the time between the first and the last trial completion over n - 1:
    what each further trial adds once the actors are running (None with fewer than 2 trials).
    """
    name = f"{''.join(c if c.isalnum() else '-' for c in variant.name)}-{n}-{concurrency}-{time.time_ns()}"
    clock = Completions()
    start = time.perf_counter()
    tuner = tune.Tuner(
        variant.trainable,
        param_space=one_study({"train.seed": tune.grid_search(list(range(n))), **(extra or {})}),
        tune_config=tune.TuneConfig(reuse_actors=variant.reuse_actors, max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[clock]),
    )
    grid = tuner.fit()
    wall = time.perf_counter() - start
    if grid.num_errors:
        raise RuntimeError(f"{variant.name}: {grid.num_errors} of {n} trials errored (see error.txt under {storage})")
    done = sorted(clock.times)
    steady = (done[-1] - done[0]) / (len(done) - 1) if len(done) >= 2 else None
    return Fit(len(done), wall, steady, storage / name)


def variants(base: dict[str, Any], checkpoint_every: int = 0) -> dict[str, RayVariant]:
    """The platform's trainable and the variants that each change one thing."""
    from proselflc import data as data_lib
    from proselflc.config import build_run_config
    from proselflc.trainables import SharedDataset, make_trainable

    shared = SharedDataset.put(data_lib.load(build_run_config(base).data))
    one_cpu = {"cpu": 1, "gpu": 0}
    platform = make_trainable({BENCH_STUDY: base}, shared, checkpoint_every=checkpoint_every, cpu=1)
    return {
        "platform": RayVariant("platform", platform),
        "reuse_actors=False": RayVariant("reuse_actors=False", platform, reuse_actors=False),
        "dataset loaded per trial": RayVariant(
            "dataset loaded per trial", make_trainable({BENCH_STUDY: base}, LoadPerTrial(base), cpu=1)  # type: ignore[arg-type]
        ),
        "no checkpoint at the end": RayVariant(
            "no checkpoint at the end",
            make_trainable({BENCH_STUDY: base}, shared, cpu=1, run=train_without_checkpoint),
        ),
        "trains nothing (Ray floor)": RayVariant("trains nothing (Ray floor)", tune.with_resources(train_nothing, one_cpu)),
    }


def _ms(seconds: float | None, plain: float | None = None) -> str:
    if seconds is None:
        return "-"
    return f"{1000 * seconds:.0f}" + ("" if plain is None else f" ({seconds / plain:.0f}x)")


def per_trial(n: int, storage: Path) -> tuple[str, dict[str, float]]:
    """Measurement 1: per-trial wall time of tiny trials, Ray variants over the plain loop."""
    base = tiny_base()
    plain = plain_loop(base, n)
    rows = [["plain Engine loop", n, f"{1000 * plain:.1f}", "1x", f"{1000 * plain:.1f} (1x)", "-"]]
    steady = {"plain": plain}
    for v in variants(base).values():
        # Without actor reuse every trial starts a worker that imports torch (seconds): fewer trials suffice.
        fit = ray_fit(v, n if v.reuse_actors else max(1, n // 4), 1, storage)
        if fit.steady is not None:
            steady[v.name] = fit.steady
        startup = "-" if fit.startup is None else f"{fit.startup:.1f}"
        rows.append([v.name, fit.trials, _ms(fit.amortised), f"{fit.amortised / plain:.0f}x",
                     _ms(fit.steady, plain), startup])
    text = table(["trials run as", "trials", "ms per trial, amortised", "amortised / plain",
                  "steady ms per trial (/ plain)", "start-up s per Tuner"], rows)
    return text, steady


def reporting(m: int, epochs: int, storage: Path) -> tuple[str, float]:
    """Measurement 2: full-size trials reporting every epoch vs. once, and checkpointing every epoch.

    Compared inside the trial (the median over trials of Ray's `time_total_s`, which holds the reports'
    round trips to the driver and the checkpoint writes, but not scheduling or actor start-up) with the
    plain loop at the same `train.eval_every`. Both report frequencies run in one Tuner (the trainable
    applies `train.eval_every` from the trial's config), so they share one actor start-up.
    """
    plains = {every: plain_loop(full_base(epochs, every), m) for every in dict.fromkeys((1, epochs))}
    per_epoch = ray_fit(variants(full_base(epochs))["platform"], m, 1, storage,
                        extra={"train.eval_every": tune.grid_search(list(plains))})
    every_epoch = ray_fit(variants(full_base(epochs), checkpoint_every=1)["platform"], m, 1, storage)
    measured = []
    for fit, every, checkpoints in ((per_epoch, 1, False), (per_epoch, epochs, False), (every_epoch, 1, True)):
        trials = [t for t in read_experiment(fit.exp_dir) if t.params.get("train.eval_every", 1) == every]
        # The median: an actor's first trial also pays torch's warm-up.
        measured.append((every, checkpoints, statistics.median(t.last["time_total_s"] for t in trials), len(trials)))
    rows = []
    for every, checkpoints, inside, count in measured:
        plain = plains[every]
        label = f"{epochs // every} report(s), " + ("checkpoint every epoch" if checkpoints else "checkpoint at the end")
        rows.append([label, count, f"{1000 * plain:.0f}", f"{1000 * inside:.0f}", f"{inside / plain:.2f}x",
                     f"{100 * (inside - plain) / plain:.0f}%"])
    text = table([f"platform trial, all digits, {epochs} epochs", "trials", "plain ms per run", "in-trial ms",
                  "in-trial / plain", "in-trial overhead / plain"], rows)
    if epochs > 1:
        over = [inside - plains[every] for every, _, inside, _ in measured]
        per_report = (over[0] - over[1]) / (epochs - 1)
        per_ckpt = (over[2] - over[0]) / (epochs - 1)
        text += (f"\nper extra report: {1000 * per_report:.1f} ms = {100 * per_report * epochs / plains[1]:.1f}% of a "
                 f"{epochs}-epoch trial reporting every epoch; per extra checkpoint: {1000 * per_ckpt:.1f} ms = "
                 f"{100 * per_ckpt / plains[1]:.1f}% of the trial each")
    return text, plains[1]


def parallel(m: int, epochs: int, cpus: int, storage: Path) -> str:
    """Measurement 3: sweep throughput with every core busy over one trial at a time (full-size trials)."""
    base = full_base(epochs)
    plain = plain_loop(base, m)
    platform = variants(base)["platform"]
    one, many = ray_fit(platform, m, 1, storage), ray_fit(platform, m, cpus, storage)
    rows = []
    for label, a, b in (("whole Tuner (start-up included)", one.amortised, many.amortised),
                        ("steady (first to last completion)", one.steady, many.steady)):
        if a is None or b is None:
            continue
        rows.append([label, m, f"{1 / plain:.2f}", f"{1 / a:.2f}", f"{1 / b:.2f}", f"{a / b:.2f}x",
                     f"{a / b / cpus:.2f}", f"{plain / b:.2f}x"])
    return table([f"all digits, {epochs} epochs", "trials", "plain loop trials/s", "Ray 1 at a time trials/s",
                  f"Ray {cpus} at a time trials/s", f"{cpus} / 1 speed-up", "parallel efficiency",
                  f"Ray {cpus} at a time / plain loop"], rows)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks tuning_overhead", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 tiny and 4 six-epoch trials per measurement")
    p.add_argument("--trials", type=int, default=None, help="tiny trials per measurement (default 16; quick 4)")
    p.add_argument("--full-trials", type=int, default=None, help="full-size trials per measurement (default 12; quick 4)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of a full-size trial (default 18; quick 6)")
    args = p.parse_args(argv)
    require_positive(p, args, "trials", "full_trials", "epochs")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    n = args.trials or (4 if args.quick else 16)
    m = args.full_trials or (4 if args.quick else 12)
    epochs = args.epochs or (6 if args.quick else 18)
    with tempfile.TemporaryDirectory(prefix="proselflc-overhead-") as tmp, local_ray() as cpus:
        storage = Path(tmp)
        print(f"tuning overhead: local Ray with {cpus} CPUs, 1 CPU and 1 torch thread per trial; "
              f"the plain loop runs in this process with 1 torch thread; {load()}", flush=True)
        text, per = per_trial(n, storage)
        print(f"\n1. per-trial cost, tiny trial (1 epoch, {TINY_LIMIT} examples), one trial at a time\n{text}", flush=True)
        text, trial_s = reporting(m, epochs, storage)
        print(f"\n2. reporting and checkpoint frequency, one trial at a time\n{text}", flush=True)
        if "platform" in per:
            print(f"platform's steady per-trial overhead = {100 * (per['platform'] - per['plain']) / trial_s:.1f}% "
                  f"of a full-size search trial ({epochs} epochs of all digits)", flush=True)
        print(f"\n3. parallel efficiency\n{parallel(m, epochs, cpus, storage)}", flush=True)
        print(f"\nafter: {load()}", flush=True)
    return 0
