"""The sweep contract: what `proselflc tune` writes into a sweep directory and the analysis reads back.

Ray-free on purpose: a sweep copied off a cluster must load where Ray is not installed, and the runner,
the analysis and the benchmarks must agree on the names, the manifest and the one selection rule.

A sweep directory holds `sweep.yaml` (the resolved sweep), `manifest.json` (a `Manifest`: every study,
its status and its selected configuration) and one Ray Tune experiment, `trials/`, in which every
trial of every study runs: a trial's config names its study and phase
(`{"study": "symmetric-0.4/proselflc", "phase": "search" | "final", "<dotted.key>": value, ...}`), and
its directory is `<kind>-<rate>_<method>_<phase>_<trial id>`. Sweeps written by earlier versions (one
experiment per study under `<study>/search/`, final re-runs in `final/` under a `final_run` key) still
load: the manifest names each study's experiment directories.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proselflc import metric_table, storage
from proselflc.errors import ConfigError

SWEEP_FILE = "sweep.yaml"
MANIFEST_FILE = "manifest.json"
#: The one Ray Tune experiment of a sweep (name under the sweep directory).
EXPERIMENT_DIR = "trials"
#: Keys of a trial's config that say which study it belongs to and whether it searches or re-runs.
STUDY = "study"
PHASE = "phase"
Phase = Literal["search", "final"]
PHASES: tuple[str, ...] = ("search", "final")
#: Keys a final re-run sets on top of its study's selected configuration (not searched, so not compared).
FINAL_ONLY_KEYS = ("train.seed", "data.val_fraction")
#: Layout of earlier versions: the shared final-run experiment and the key its trials nested params under.
LEGACY_FINAL_DIR = "final"
LEGACY_FINAL_RUN = "final_run"

#: Manifest version this code writes: every study in one Tuner, trials listed per study.
CURRENT_VERSION = 2

Status = Literal["pending", "searching", "searched", "finished"]
#: A study's life: no trial yet -> search trials running -> best config chosen, re-runs running -> done.
STATUSES: tuple[str, ...] = ("pending", "searching", "searched", "finished")

_STUDY_KEY = re.compile(r"^(?P<kind>[a-z0-9_]+)-(?P<rate>[0-9.eE+-]+)/(?P<method>[A-Za-z0-9][A-Za-z0-9_.-]*)$")


class StudyKey(BaseModel):
    """One (noise kind, noise rate, method) study; `str()` is its name, e.g. 'symmetric-0.4/proselflc'."""

    model_config = ConfigDict(frozen=True)

    kind: str
    rate: float
    method: str

    def __str__(self) -> str:
        return f"{rate_dir(self.kind, self.rate)}/{self.method}"

    @property
    def slug(self) -> str:
        """The key as one path component (trial directory names)."""
        return str(self).replace("/", "_")

    @classmethod
    def parse(cls, text: str) -> StudyKey:
        match = _STUDY_KEY.match(text)
        if not match:
            raise ValueError(f"study key {text!r} is not '<noise kind>-<rate>/<method>', e.g. 'symmetric-0.4/proselflc'")
        return cls(kind=match["kind"], rate=float(match["rate"]), method=match["method"])


def rate_dir(kind: str, rate: float) -> str:
    """Name of a noise setting, e.g. symmetric-0.4, symmetric-0 (the first half of a study key)."""
    return f"{kind}-{rate:g}"


def trial_dirname(study: str, phase: str, trial_id: str) -> str:
    """A trial's directory inside the sweep's experiment: readable by study and phase, unique by id."""
    return f"{study.replace('/', '_')}_{phase}_{trial_id}"


class StudyEntry(BaseModel):
    """A study in the manifest: what it is, where its trials are, how far it got and what it chose."""

    model_config = ConfigDict(extra="allow")

    study: str
    dataset: str
    model: str
    noise_kind: str
    noise_rate: float
    method: str
    loss: str = ""
    search_dir: str = Field(description="experiment directory of its search trials, relative to the sweep")
    final_dir: str | None = Field(None, description="experiment directory of its final re-runs; None: none")
    status: Status = "pending"
    best_params: dict[str, Any] | None = None
    best_trial: str | None = Field(None, description="directory name of the search trial selected")
    best_value: float | None = None
    trial_order: list[str] = Field(default_factory=list, description="search trial dirs in creation order")
    final_trials: list[str] = Field(default_factory=list, description="final re-run trial dirs")

    @property
    def done(self) -> bool:
        return self.status == "finished"


class Manifest(BaseModel):
    """manifest.json: the sweep's table of contents and progress (rewritten atomically on every change)."""

    model_config = ConfigDict(extra="allow")

    version: int = Field(1, description=f"{CURRENT_VERSION}: one Tuner per sweep; 1 (or absent): one per study")
    sweep: str
    metric: str = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    max_t: int = 0
    final_seeds: list[int] = Field(default_factory=list)
    studies: list[StudyEntry]

    def entry(self, study: str) -> StudyEntry:
        for entry in self.studies:
            if entry.study == study:
                return entry
        raise ConfigError(f"study {study!r} is not in the manifest; it lists {[e.study for e in self.studies]}")

    @property
    def finished(self) -> bool:
        return all(entry.done for entry in self.studies)


def read_manifest(sweep_dir: str | Path | storage.Location) -> Manifest:
    """Parse `<sweep>/manifest.json` (a local path or a URI), naming the file and the bad field on failure."""
    root = storage.as_dir(sweep_dir)
    if not root.is_dir():
        raise ConfigError(f"sweep directory {str(root)!r} does not exist")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(
            f"{str(root)!r} is not a sweep directory: {MANIFEST_FILE} is missing "
            "(pass the directory `proselflc tune` wrote, <storage_path>/<sweep name>)"
        )
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(
            f"{str(path)!r} is not valid JSON, so not a readable sweep manifest ({type(exc).__name__}: "
            f"{str(exc)[:200]}); restore it from a copy of the sweep, or rerun the sweep"
        ) from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{str(path)!r} is not a valid sweep manifest: {problems}") from None


def write_manifest(sweep_dir: str | Path | storage.Location, manifest: Manifest) -> None:
    storage.write_text(storage.as_dir(sweep_dir) / MANIFEST_FILE, manifest.model_dump_json(indent=2) + "\n")


#: Metrics computed with the true labels (the clean test set, the noisy subset's true labels): reported,
#: never used to select a configuration. Both lists and the guard come from `proselflc.metric_table`.
CLEAN_LABEL_METRICS = metric_table.clean_label_metrics()
#: Metrics a search may select on: computed from the noisy training labels only.
SELECTABLE_METRICS = metric_table.selectable_metrics()
uses_clean_labels = metric_table.uses_clean_labels


K = TypeVar("K")


def select_best(
    candidates: Iterable[tuple[K, Mapping[str, Any] | None]], metric: str, mode: str, max_t: int
) -> tuple[K, Mapping[str, Any]] | None:
    """THE selection rule: the (key, last result) with the best last `metric`, or None.

    Candidates come in trial creation order and are judged by their last reported row. Only rows with
    a finite `metric` that did not diverge compete; among them, trials that trained the full `max_t`
    epochs are preferred, because the selected configuration is re-run full length and should have been
    seen to hold up that long (ASHA-stopped trials compete only when no trial reached `max_t`). Ties go
    to the trial created first. The runner, the analysis and the benchmarks all call this function.
    """
    usable = [
        (key, last)
        for key, last in candidates
        if last
        and not last.get("diverged")
        and isinstance(last.get(metric), int | float)
        and not isinstance(last.get(metric), bool)
        and math.isfinite(last[metric])
    ]
    full = [item for item in usable if (item[1].get("epoch") or 0) >= max_t]
    pool = full or usable
    if not pool:
        return None
    sign = 1.0 if mode == "max" else -1.0
    return max(pool, key=lambda item: sign * float(item[1][metric]))
