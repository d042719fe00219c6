"""What the Ray benchmarks share: one local Ray, the digits study they measure, Ray Tune's trial files, tables.

Both Ray benchmarks (search efficiency, tuning overhead) measure the platform on the same study, digits
at 40% symmetric noise with ProSelfLC, so a figure from one (the length of a search trial) is the
yardstick of the other (how large the per-trial overhead is next to it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typing_extensions import Self

from proselflc import ray_compat  # local Ray on 127.0.0.1 only
from proselflc.sweep_contract import PHASE, STUDY

#: The study both benchmarks measure: the quickstart's digits recipe at 40% symmetric noise, ProSelfLC.
DIGITS_BASE: dict[str, Any] = {
    "name": "bench",
    "data": {"name": "digits", "val_fraction": 0.15},
    "model": {"name": "mlp", "hidden": 64},
    "noise": {"kind": "symmetric", "rate": 0.4},
    "loss": {"name": "proselflc"},
    "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4, "schedule": "cosine"},
    "train": {"epochs": 18, "batch_size": 64, "seed": 0, "progress": False},
}


def cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load() -> str:
    """The machine's load averages: timings are only comparable when nothing else competes for the cores."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {cores()} cores"


def quiet(message: str) -> None:
    """A sweep log that prints nothing (module-level, so the Tuner state holding it pickles)."""


@contextmanager
def local_ray(num_cpus: int | None = None) -> Iterator[int]:
    """The Ray already initialised (a test's shared instance), else a local one on all cores, shut down after.

    Yields the number of CPUs Ray schedules trials on.
    """
    import ray

    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        ray_compat.init_on_loopback(num_cpus=num_cpus or cores(), include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
        started = True
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        if started:
            ray.shutdown()


class Stopwatch:
    """Wall time of a block, on the clock Ray stamps results with (time.time)."""

    def __enter__(self) -> Self:
        self.start = time.time()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.time() - self.start


@dataclass(frozen=True)
class TrialRecord:
    """One Ray Tune trial read back from its directory: sampled params, reported rows, and when each was produced.

    `times[i]` is when the trial produced row i, on the `time.time()` clock. Ray stamps each row with the
    whole second it was produced (`timestamp`) and the trial's own running clock (`time_total_s`); every
    row bounds the trial's start to one second, so together they pin it down to a fraction of a second.
    (Result files' modification times are useless here: Ray copies trial dirs to storage at the end.)
    """

    trial_id: str
    params: dict[str, Any]
    rows: list[dict[str, Any]]
    times: list[float]
    errored: bool

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}

    @property
    def epochs(self) -> int:
        """Epochs this trial trained (its last reported epoch)."""
        return int(self.last.get("epoch", 0))


#: The study name a benchmark's single-study Tuner gives its trials (the sweep trainable serves studies).
BENCH_STUDY = "bench"


def one_study(space: dict[str, Any]) -> dict[str, Any]:
    """A plain Tuner's param_space for the platform's trainable: every trial searches study BENCH_STUDY."""
    return {STUDY: BENCH_STUDY, PHASE: "search", **space}


def read_experiment(exp_dir: str | Path) -> list[TrialRecord]:
    """Every trial of a Ray Tune experiment directory, in trial-id order (grid order for grid searches)."""
    exp_dir = Path(exp_dir)
    trials = []
    for result_file in sorted(exp_dir.glob("*/result.json")):
        trial_dir = result_file.parent
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        params_file = trial_dir / "params.json"
        params = json.loads(params_file.read_text()) if params_file.is_file() else {}
        params = {k: v for k, v in params.items() if k not in (STUDY, PHASE)}
        times = row_times(rows)
        trial_id = str(rows[0]["trial_id"]) if rows else trial_dir.name
        trials.append(TrialRecord(trial_id, params, rows, times, (trial_dir / "error.txt").exists()))
    return sorted(trials, key=lambda t: t.trial_id)


def row_times(rows: list[dict[str, Any]]) -> list[float]:
    """Wall time of each row: the trial's start (the intersection of every row's one-second bound) + its clock."""
    clocked = [r for r in rows if "timestamp" in r and "time_total_s" in r]
    if not clocked:
        return [float(r.get("timestamp", 0)) for r in rows]
    low = max(r["timestamp"] - r["time_total_s"] for r in clocked)
    high = min(r["timestamp"] + 1 - r["time_total_s"] for r in clocked)
    start = (low + high) / 2 if low <= high else low
    return [start + r.get("time_total_s", 0.0) for r in rows]


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    """Exit with argparse's usage error when a given count option is below 1 (None means its default)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 (got {value})")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pasteable into BENCHMARKS.md), numbers formatted by the caller."""
    cells = [list(map(str, headers)), *[list(map(str, r)) for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
    return "\n".join([fmt(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, cells[1:])])
