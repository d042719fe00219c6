"""The recorded grids of the search-efficiency suite: every config of a small grid per study, trained once per noise
setting with the Engine, in-process (no Ray), and kept on disk so a rerun replays without training again.

One JSON Lines file per noise setting, `<cache>/<kind>-<rate>-<epochs>ep.jsonl` (`-<limit>ex` added for a run on
the first `limit` examples, as `--quick`), one line per trained config:

    {"study": "proselflc", "point": [0.2, 0.05, "global"], "params": {"optim.lr": 0.2, ...},
     "rows": [{"epoch": 1, "val_accuracy": ..., "test_accuracy": ..., "prediction_changes": ..., ...}, ...],
     "val_correct": [0, 1, ...], "test_correct": [1, 1, ...], "seconds": 9.8}

`rows` are the Engine's per-epoch rows (every key of `proselflc.metric_table`); `val_correct` / `test_correct`
are the last evaluation's per-example correctness (noisy validation labels / clean test labels), in the split's
fixed order, which is the same for every config of a setting (one training seed, one noisy split). A line is
appended as soon as its config finishes, so an interrupted run keeps what it trained.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The quickstart's regime, where cross entropy memorises: digits, MLP-512, no weight decay, a high lr, 60 epochs.
BASE: dict[str, Any] = {
    "name": "grid",
    "data": {"name": "digits", "val_fraction": 0.15},
    "model": {"name": "mlp", "hidden": 512},
    "loss": {"name": "crossentropy"},
    "optim": {"lr": 0.2, "momentum": 0.9, "weight_decay": 0.0, "schedule": "multistep", "milestones": [45, 55],
              "gamma": 0.1},
    "train": {"epochs": 60, "batch_size": 64, "seed": 0, "progress": False, "threads": 1},
}

#: Per study: its loss hyperparameters fixed for the suite, and its grid axes (12 configs each, so one full-length
#: trial is 8.3% of a study's grid epochs and a 15% budget can hold a full trial and the early-stopped ones; a
#: one-value axis is fixed, not searched).
STUDIES: dict[str, dict[str, Any]] = {
    "crossentropy": {"fixed": {}, "axes": {"optim.lr": (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6,
                                                        0.8), "optim.momentum": (0.9,)}},
    "labelsmoothing": {"fixed": {}, "axes": {"optim.lr": (0.05, 0.1, 0.2, 0.5), "loss.epsilon": (0.2, 0.4, 0.6)}},
    "proselflc": {"fixed": {"logit_temperature": 0.5},
                  "axes": {"optim.lr": (0.05, 0.1, 0.2), "loss.transit_time_ratio": (0.05, 0.2, 0.35, 0.5),
                           "loss.trust_mode": ("global",)}},
}


@dataclass(frozen=True)
class Setting:
    """One label-noise setting of the suite."""

    kind: str
    rate: float

    @property
    def label(self) -> str:
        return f"{self.kind} {round(100 * self.rate)}%"

    def file(self, cache: Path, epochs: int, limit: int | None = None) -> Path:
        return cache / f"{self.kind}-{self.rate:g}-{epochs}ep{f'-{limit}ex' if limit else ''}.jsonl"


SETTINGS = (Setting("symmetric", 0.2), Setting("symmetric", 0.4), Setting("symmetric", 0.6),
            Setting("symmetric", 0.8), Setting("pairflip", 0.45))


@dataclass(frozen=True)
class GridPoint:
    """One trained config: its grid point, per-epoch rows and last evaluation's per-example correctness."""

    study: str
    point: tuple[Any, ...]
    rows: list[dict[str, Any]]
    val_correct: list[int]
    test_correct: list[int]

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}


def points(axes: dict[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Every grid point of `axes`, in a fixed order."""
    return list(itertools.product(*axes.values()))


def run_config(setting: Setting, study: str, params: dict[str, Any], epochs: int,
               limit: int | None = None) -> dict[str, Any]:
    """The Engine's run of one grid point (a dotted-key override of BASE)."""
    base = {**BASE, "noise": {"kind": setting.kind, "rate": setting.rate},
            "loss": {"name": study, **STUDIES[study]["fixed"]},
            "train": {**BASE["train"], "epochs": epochs},
            # The lr drops at 3/4 and 11/12 of the run, as at epochs 45 and 55 of 60.
            "optim": {**BASE["optim"], "milestones": [max(1, round(epochs * 3 / 4)), max(1, round(epochs * 11 / 12))]},
            "data": {**BASE["data"], **({"limit": limit} if limit else {})}}
    base = json.loads(json.dumps(base))
    for key, value in params.items():
        section, name = key.split(".", 1)
        base[section][name] = value
    return base


def _train(raw: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int], list[int], float]:
    """Train one config in this (worker) process; module-level so a process pool can call it."""
    from proselflc.config import build_run_config
    from proselflc.training.engine import Engine

    start = time.perf_counter()
    engine = Engine(build_run_config(raw))
    rows = engine.run()
    clean = lambda row: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    return ([clean(r) for r in rows], engine.val_correct.astype(int).tolist(),
            engine.test_correct.astype(int).tolist(), time.perf_counter() - start)


def _read(path: Path) -> Iterator[dict[str, Any]]:
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def load_grid(setting: Setting, cache: Path, epochs: int, studies: tuple[str, ...],
              axes: dict[str, dict[str, tuple[Any, ...]]], limit: int | None = None
              ) -> dict[str, dict[tuple[Any, ...], GridPoint]]:
    """{study: {point: its record}} from the cache (only the points of `axes`)."""
    out: dict[str, dict[tuple[Any, ...], GridPoint]] = {s: {} for s in studies}
    for line in _read(setting.file(cache, epochs, limit)):
        study, point = line["study"], tuple(line["point"])
        if study in out and point in set(points(axes[study])):
            rows = [{k: (float("nan") if v is None else v) for k, v in r.items()} for r in line["rows"]]
            for row in rows[:1]:  # recorded when the Engine reported epoch 1 as NaN: it reports 1.0 (all new)
                if math.isnan(row.get("prediction_changes", 1.0)):
                    row["prediction_changes"] = 1.0
            out[study][point] = GridPoint(study, point, rows, line["val_correct"], line["test_correct"])
    return out


def train_grids(settings: tuple[Setting, ...], studies: tuple[str, ...], axes: dict[str, dict[str, tuple[Any, ...]]],
                epochs: int, cache: Path, workers: int, limit: int | None = None,
                log: Callable[[str], None] = print) -> float:
    """Train every grid point the cache lacks, `workers` processes at a time (1 torch thread each); seconds spent."""
    cache.mkdir(parents=True, exist_ok=True)
    todo = []
    for setting in settings:
        have = load_grid(setting, cache, epochs, studies, axes, limit)
        for study in studies:
            keys = tuple(axes[study])
            todo += [(setting, study, point, dict(zip(keys, point, strict=True)))
                     for point in points(axes[study]) if point not in have[study]]
    if not todo:
        return 0.0
    log(f"training {len(todo)} grid configs ({epochs} epochs each) in {workers} process(es); cache {cache}")
    start = time.perf_counter()
    if workers == 1:  # in this process, one config after another
        results = ((job, _train(run_config(job[0], job[1], job[3], epochs, limit))) for job in todo)
        _record(results, len(todo), cache, epochs, limit, start, log)
        return time.perf_counter() - start
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_train, run_config(s, study, params, epochs, limit)): (s, study, point, params)
                   for s, study, point, params in todo}
        _record(((futures[f], f.result()) for f in as_completed(futures)), len(todo), cache, epochs, limit, start,
                log)
    return time.perf_counter() - start


def _record(results: Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]], total: int, cache: Path, epochs: int,
            limit: int | None, start: float, log: Callable[[str], None]) -> None:
    """Append each trained config to its setting's file as it arrives."""
    for done, ((setting, study, point, params), result) in enumerate(results, 1):
        rows, val_correct, test_correct, seconds = result
        line = {"study": study, "point": list(point), "params": params, "rows": rows,
                "val_correct": val_correct, "test_correct": test_correct, "seconds": round(seconds, 2)}
        with setting.file(cache, epochs, limit).open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        if done % 10 == 0 or done == total:
            log(f"  {done}/{total} trained ({time.perf_counter() - start:.0f} s)")
