"""Cluster utilisation: how busy a sweep keeps N GPUs, one study at a time vs. every study side by side.

The platform's own sweep runner, searcher (per-study Optuna TPE) and scheduler (per-study ASHA) run the
same sweep twice on a local Ray that declares N fake GPUs: once with `max_concurrent_studies: 1` and every
study's trials at once (the way `proselflc tune` ran before one Tuner held the whole sweep), once with the
defaults (all studies side by side, a few trials in flight per study). Only the training inside a trial is
replaced, by a timed stand-in: each epoch sleeps `--epoch-s` seconds and reports a noisy learning curve whose
level depends on the sampled configuration and the noise rate, so ASHA stops the weak trials as it would.
It prints, for each arm, the wall time and the GPU-busy fraction (the seconds trials held a GPU while
training, summed, over wall time x GPUs), and the ratio of the two wall times, measured in the same run.

`--nodes N` (N > 1) instead runs the side-by-side arm twice: on one node with all the GPUs, then on a simulated
cluster of N nodes (`ray.cluster_utils.Cluster`: N raylets on 127.0.0.1, the GPUs and CPUs split among them), and
prints the busy fraction of each: a trial must fit on one node, so the split cluster may hold fewer at once.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._harness import load, quiet, read_experiment, require_positive, table
from proselflc import ray_compat  # local Ray on 127.0.0.1 only

METHODS = ("crossentropy", "labelsmoothing", "proselflc", "confidencepenalty", "gce")


def stand_in(params: dict[str, Any], *, base: dict[str, Any], epoch_s: float = 0.5, **_: Any) -> None:
    """A trial that sleeps instead of training: `epoch_s` per epoch, reporting val_accuracy on a curve.

    The curve's level falls with the noise rate and with how far each sampled number sits from the
    middle of its decade (a smooth landscape TPE can learn); every epoch adds seeded noise.
    """
    from ray import tune

    rate = float(base["noise"]["rate"])
    numbers = [float(v) for v in params.values() if isinstance(v, int | float) and not isinstance(v, bool) and v]
    distance = sum((math.log10(abs(v)) % 1.0 - 0.5) ** 2 * 4 for v in numbers) / max(1, len(numbers))
    level = (0.95 - 0.5 * rate) * (1.0 - 0.4 * distance)
    rng = random.Random(repr(sorted(params.items())))
    for epoch in range(1, int(base["train"]["epochs"]) + 1):
        time.sleep(epoch_s)
        value = level * (1.0 - math.exp(-epoch / 4.0)) + rng.gauss(0.0, 0.01)
        tune.report({"epoch": epoch, "val_accuracy": value, "test_accuracy": value, "diverged": False})


def sweep_raw(args: argparse.Namespace, storage: Path, name: str, serial: bool) -> dict[str, Any]:
    rates = [round(0.2 * i, 1) for i in range(args.rates)]
    raw: dict[str, Any] = {
        "name": name,
        "base": {
            "data": {"name": "digits", "limit": 200},
            "model": {"name": "mlp", "hidden": 16},
            "train": {"epochs": args.max_t, "seed": 0},
        },
        "noise": {"kind": "symmetric", "rates": rates},
        "methods": {m: {} for m in METHODS[: args.methods]},
        "num_samples": args.samples,
        "scheduler": {"name": "asha", "grace_period": args.grace, "reduction_factor": args.reduction},
        "resources": {"cpu": 1, "gpu": 1},
        "storage_path": str(storage),
        "final_seeds": args.final_seeds,
        "max_failures": 0,
    }
    if serial:
        # One study at a time, all of its trials at once: the sweep as separate Tuners ran it.
        raw.update(max_concurrent_studies=1, per_study_concurrency=args.samples)
    return raw


def run_arm(args: argparse.Namespace, storage: Path, serial: bool) -> dict[str, Any]:
    """Run one arm; its wall seconds, GPU-seconds trained, trial count and per-study trial counts."""
    from functools import partial

    from proselflc.sweep_contract import EXPERIMENT_DIR, read_manifest
    from proselflc.tuning import build_sweep_config, run_sweep

    name = "serial" if serial else "side-by-side"
    sweep = build_sweep_config(sweep_raw(args, storage, name, serial))
    start = time.time()
    sweep_dir = run_sweep(sweep, log=quiet, trial_function=partial(stand_in, epoch_s=args.epoch_s))
    wall = time.time() - start
    trials = read_experiment(sweep_dir / EXPERIMENT_DIR)
    manifest = read_manifest(sweep_dir)
    if not manifest.finished:
        raise RuntimeError(f"{name}: the sweep did not finish (see {sweep_dir})")
    busy = sum(float(t.last.get("time_total_s", 0.0)) for t in trials)
    return {"arm": name, "wall": wall, "busy": busy, "trials": len(trials), "studies": len(manifest.studies)}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks cluster_utilisation", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 rates x 2 methods x 4 trials, max_t 9, 0.2 s epochs")
    p.add_argument("--gpus", type=int, default=8, help="fake GPUs the local Ray declares (default 8)")
    p.add_argument("--rates", type=int, default=None, help="noise rates 0, 0.2, ... (default 4; quick 2)")
    p.add_argument("--methods", type=int, default=None, help=f"methods, at most {len(METHODS)} (default 3; quick 2)")
    p.add_argument("--samples", type=int, default=None, help="search trials per study (default 8; quick 4)")
    p.add_argument("--max-t", type=int, default=None, help="epochs of a full trial (default 27; quick 9)")
    p.add_argument("--grace", type=int, default=1, help="ASHA grace period (default 1)")
    p.add_argument("--reduction", type=float, default=3.0, help="ASHA reduction factor (default 3)")
    p.add_argument("--final-seeds", type=int, default=None, help="re-runs per study (default 2; quick 1)")
    p.add_argument("--epoch-s", type=float, default=None, help="seconds per stand-in epoch (default 0.5; quick 0.2)")
    p.add_argument("--nodes", type=int, default=1,
                   help="N > 1: the side-by-side arm on one node vs. on N local nodes sharing the GPUs (default 1)")
    args = p.parse_args(argv)
    require_positive(p, args, "gpus", "rates", "methods", "samples", "max_t", "grace", "nodes")
    if args.nodes > args.gpus:
        p.error(f"--nodes {args.nodes}: at most --gpus ({args.gpus}), each node gets at least one GPU")
    quick = args.quick
    for name, full, small in (("rates", 4, 2), ("methods", 3, 2), ("samples", 8, 4), ("max_t", 27, 9),
                              ("final_seeds", 2, 1), ("epoch_s", 0.5, 0.2)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if args.methods > len(METHODS):
        p.error(f"--methods {args.methods}: at most {len(METHODS)} ({', '.join(METHODS)})")
    if args.rates > 5:
        p.error(f"--rates {args.rates}: at most 5 (0, 0.2, ..., 0.8)")
    return args


def split(total: int, parts: int) -> list[int]:
    """`total` GPUs over `parts` nodes, as even as can be (the first nodes get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@contextmanager
def local_ray(gpus: int, nodes: int) -> Iterator[None]:
    """A Ray of `gpus` fake GPUs (and as many CPUs): one node, or `nodes` raylets on 127.0.0.1.

    The cluster is Ray's local-only mode (node address 127.0.0.1, everything bound to loopback), which Ray reads
    from its constants and, in the processes it starts, from the environment; both are restored afterwards.
    """
    import ray

    if nodes == 1:
        ray_compat.init_on_loopback(num_cpus=gpus, num_gpus=gpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()
        return
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # Its own temp dir, where Ray also writes the cluster's address (not /tmp/ray, which other Rays may use).
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    (Path(temp) / "ray").mkdir()
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": temp}
    saved_env, saved = {k: os.environ.get(k) for k in env}, ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(env)
    ray_constants.ENABLE_RAY_CLUSTER = False
    cluster = None
    try:
        sizes = split(gpus, nodes)
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": sizes[0], "num_gpus": sizes[0], "include_dashboard": False, "node_ip_address": "127.0.0.1",
            "temp_dir": str(Path(temp) / "ray")})
        for size in sizes[1:]:
            cluster.add_node(num_cpus=size, num_gpus=size, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


def compare_nodes(args: argparse.Namespace) -> int:
    """The side-by-side arm on one node of `--gpus` GPUs, then on `--nodes` nodes sharing them."""
    layouts = [("1 node", 1), (f"{args.nodes} nodes ({'+'.join(map(str, split(args.gpus, args.nodes)))} GPUs)",
                               args.nodes)]
    print(f"cluster_utilisation --nodes {args.nodes}: the side-by-side arm, {args.rates} rates x {args.methods} "
          f"methods x {args.samples} trials, max_t {args.max_t}, {args.final_seeds} final seeds, {args.epoch_s:g} s "
          f"per stand-in epoch, {args.gpus} GPUs (fake); {load()}")
    arms = []
    with tempfile.TemporaryDirectory(prefix="cluster-util-") as tmp:
        for i, (name, nodes) in enumerate(layouts):
            with local_ray(args.gpus, nodes):
                arms.append({**run_arm(args, Path(tmp) / str(i), serial=False), "layout": name})
    rows = [[a["layout"], a["studies"], a["trials"], f"{a['wall']:.1f}", f"{a['busy']:.0f}",
             f"{a['busy'] / (a['wall'] * args.gpus):.0%}"] for a in arms]
    print(table(["layout", "studies", "trials", "wall s", "GPU-s trained", "GPU busy"], rows))
    one, many = (a["busy"] / (a["wall"] * args.gpus) for a in arms)
    print(f"{layouts[1][0]} vs. one node: GPU busy {many:.0%} vs. {one:.0%} ({many / one:.2f}x)")
    return 0


def main(argv: list[str]) -> int:
    import ray

    args = parse_args(argv)
    if args.nodes > 1:
        if ray.is_initialized():
            print("cluster_utilisation --nodes: starts its own local clusters; run it where Ray is not initialised")
            return 2
        return compare_nodes(args)
    started = not ray.is_initialized()
    if started:
        ray_compat.init_on_loopback(num_cpus=args.gpus, num_gpus=args.gpus, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus < 1:
        print("cluster_utilisation: the connected Ray has no GPUs; run it without RAY_ADDRESS (it declares --gpus)")
        return 2
    try:
        print(f"cluster_utilisation: {args.rates} rates x {args.methods} methods x {args.samples} trials, ASHA "
              f"grace {args.grace} reduction {args.reduction:g} max_t {args.max_t}, {args.final_seeds} final "
              f"seeds, {args.epoch_s:g} s per stand-in epoch, {gpus} GPUs (fake); {load()}")
        with tempfile.TemporaryDirectory(prefix="cluster-util-") as tmp:
            arms = [run_arm(args, Path(tmp), serial=True), run_arm(args, Path(tmp), serial=False)]
    finally:
        if started:
            ray.shutdown()
    rows = [
        [a["arm"], a["studies"], a["trials"], f"{a['wall']:.1f}", f"{a['busy']:.0f}",
         f"{a['busy'] / (a['wall'] * gpus):.0%}"]
        for a in arms
    ]
    print(table(["arm", "studies", "trials", "wall s", "GPU-s trained", "GPU busy"], rows))
    print(f"side by side vs. one study at a time: {arms[0]['wall'] / arms[1]['wall']:.2f}x shorter wall time")
    return 0
