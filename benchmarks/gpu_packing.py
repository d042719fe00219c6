"""Fractional-GPU packing: aggregate training samples/s of small trials at gpu=fraction vs. one per GPU.

Small trials (a digits CNN) leave a GPU mostly idle; asking Ray for `resources.gpu: 0.25` packs four
on one GPU. This runs the platform's own trainable (the Engine behind `proselflc tune`) as N identical
trials twice on the connected Ray cluster, once at gpu=1 and once at gpu=fraction, and prints the
ratio of aggregate throughput measured in the same run. On a machine without GPUs, `--fake-gpus N`
declares N GPUs to a local Ray so the packing logic runs (trials then train on the CPU, so the
ratio says nothing about a GPU: the output says which device the trials used).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ray import tune

from benchmarks._harness import (
    BENCH_STUDY,
    DIGITS_BASE,
    TrialRecord,
    load,
    one_study,
    read_experiment,
    require_positive,
    table,
)
from proselflc import data as data_lib
from proselflc import ray_compat  # local Ray on 127.0.0.1 only
from proselflc.config import build_run_config
from proselflc.trainables import SharedDataset, make_trainable


def small_trial(epochs: int) -> dict[str, Any]:
    """The digits study with a CNN, the kind of trial that cannot fill a GPU on its own."""
    return {**DIGITS_BASE, "model": {"name": "cnn", "width": 32},
            "train": {**DIGITS_BASE["train"], "epochs": epochs, "device": "auto"}}


def train_samples(base: dict[str, Any]) -> int:
    """Training examples per epoch of `base` (the dataset minus the Engine's validation split)."""
    cfg = build_run_config(base)
    n = len(data_lib.load(cfg.data).limit(cfg.data.limit))
    return n - round(cfg.data.val_fraction * n)


def most_at_once(records: list[TrialRecord]) -> int:
    """The largest number of trials that were training at the same moment (from Ray's result stamps)."""
    events = []
    for r in records:
        start = r.times[0] - float(r.rows[0].get("time_this_iter_s", 0.0))
        events += [(start, 1), (r.times[-1], -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


def fit(
    base: dict[str, Any], shared: SharedDataset, trials: int, gpu: float, storage: Path
) -> tuple[float, int]:
    """Wall seconds for `trials` identical trials (seeds 0..trials-1) at `gpu` each, and the most seen at once."""
    name = f"packing-gpu{gpu:g}-{time.time_ns()}"
    tuner = tune.Tuner(
        make_trainable({BENCH_STUDY: base}, shared, cpu=1.0, gpu=gpu),
        param_space=one_study({"train.seed": tune.grid_search(list(range(trials)))}),
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    if grid.num_errors:
        raise RuntimeError(f"gpu={gpu:g}: {grid.num_errors} of {trials} trials errored (see {storage / name})")
    finished = [t for t in read_experiment(storage / name) if t.rows]
    if len(finished) != trials:
        raise RuntimeError(f"gpu={gpu:g}: {len(finished)} of {trials} trials reported results")
    return wall, most_at_once(finished)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks gpu_packing", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 trials of 2 epochs: a smoke-size measurement")
    p.add_argument("--fraction", type=float, default=0.25, help="GPU share per packed trial (default 0.25)")
    p.add_argument("--trials", type=int, default=None, help="trials per arm (default 8; quick 4)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 20; quick 2)")
    p.add_argument("--fake-gpus", type=int, default=0,
                   help="declare N GPUs to a local Ray (CPU-only machines: exercises the packing logic only)")
    args = p.parse_args(argv)
    require_positive(p, args, "trials", "epochs")
    args.trials = args.trials or (4 if args.quick else 8)
    args.epochs = args.epochs or (2 if args.quick else 20)
    if not 0 < args.fraction <= 1:
        p.error(f"--fraction must be in (0, 1] (got {args.fraction})")
    return args


def main(argv: list[str]) -> int:
    import ray

    args = parse_args(argv)
    started = not ray.is_initialized()
    if started:
        ray_compat.init_on_loopback(num_gpus=args.fake_gpus or None, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus < 1:
            print("gpu_packing: the Ray cluster has no GPU; run it where one is, or pass --fake-gpus 1 to "
                  "exercise the packing logic on CPU")
            return 0 if args.quick else 2
        base = small_trial(args.epochs)
        shared = SharedDataset.put(data_lib.load(build_run_config(base).data))
        samples = args.trials * args.epochs * train_samples(base)
        with tempfile.TemporaryDirectory(prefix="proselflc-packing-") as storage:
            whole, whole_peak = fit(base, shared, args.trials, 1.0, Path(storage))
            packed, packed_peak = fit(base, shared, args.trials, args.fraction, Path(storage))
        device = "cuda" if torch.cuda.is_available() else "cpu (fake GPUs: no GPU speed-up is measured)"
        print(f"gpu_packing: {args.trials} digits-CNN trials x {args.epochs} epochs per arm, "
              f"{gpus:g} GPU(s) in Ray, trials train on {device}; {load()}")
        print(table(["arm", "GPU allows at once", "seen at once*", "wall s", "samples/s (aggregate)"], [
            ["gpu=1", int(gpus), whole_peak, f"{whole:.1f}", f"{samples / whole:.0f}"],
            [f"gpu={args.fraction:g}", int(gpus / args.fraction), packed_peak, f"{packed:.1f}",
             f"{samples / packed:.0f}"],
        ]))  # fmt: skip
        print("* from Ray's whole-second result stamps: approximate for trials shorter than a few seconds")
        print(f"ratio packed / one per GPU: {whole / packed:.2f}x aggregate throughput")
    finally:
        if started:
            ray.shutdown()
    return 0
