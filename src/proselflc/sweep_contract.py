"""The sweep contract: what `proselflc tune` writes into a sweep directory and the analysis reads back.

Ray-free on purpose: a sweep copied off a cluster must load where Ray is not installed, and the runner,
the analysis and the benchmarks must agree on the names, the manifest and the one selection rule.

A sweep directory holds `sweep.yaml` (the resolved sweep), `manifest.json` (a `Manifest`: every study,
its status and its selected configuration) and one Ray Tune experiment, `trials/`, in which every
trial of every study runs: a trial's config names its study and phase
(`{"study": "symmetric-0.4/proselflc", "phase": "search" | "final", "<dotted.key>": value, ...}`), and
its directory is `<kind>-<rate>_<method>_<phase>_<trial id>`. Sweeps written by earlier versions (one
experiment per study under `<study>/search/`, final re-runs in `final/`) load once `proselflc migrate` has
written those re-runs' params (nested under a `final_run` key) flat: the manifest names each study's
experiment directories.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proselflc import memorisation, metric_table, selection_certainty, storage
from proselflc.errors import ConfigError

SWEEP_FILE = "sweep.yaml"
MANIFEST_FILE = "manifest.json"
#: A trial's last-epoch per-example noisy-validation correctness, beside its result.json (selection certainty).
VAL_CORRECT_FILE = selection_certainty.VAL_CORRECT_FILE
#: The one Ray Tune experiment of a sweep (name under the sweep directory).
EXPERIMENT_DIR = "trials"
#: Keys of a trial's config that say which study it belongs to and whether it searches or re-runs.
STUDY = "study"
PHASE = "phase"
Phase = Literal["search", "final"]
PHASES: tuple[str, ...] = ("search", "final")
#: Keys a final re-run sets on top of its study's selected configuration (not searched, so not compared).
FINAL_ONLY_KEYS = ("train.seed", "data.val_fraction")
#: The key an earlier version's final re-runs nested their params under (`proselflc migrate` writes them flat).
LEGACY_FINAL_RUN = "final_run"

#: Manifest version this code writes: every study in one Tuner, trials listed per study, Ray's saved state in this
#: version's form. 2: the same, its Ray state in an earlier form (`proselflc migrate` rewrites it once); 1 (or
#: absent): one Tuner per study.
CURRENT_VERSION = 3
#: The first version with every study in one Tuner (what `proselflc report` reads per study's listed trials).
ONE_TUNER_VERSION = 2



class Status(StrEnum):
    """A study's life: no trial yet -> search trials running -> best config chosen, re-runs running -> done.
    A `str`, so the manifest holds the plain names and `status == "finished"` still reads."""

    PENDING = "pending"
    SEARCHING = "searching"
    SEARCHED = "searched"
    FINISHED = "finished"


STATUSES: tuple[str, ...] = tuple(status.value for status in Status)

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


class SelectionCertainty(BaseModel):
    """How sure a study's selection is (`proselflc.selection_certainty`): P(the choice beats the runner-up) by
    a paired bootstrap of the noisy validation examples, and the noise-adjusted effective validation size.
    `p_beats_runner_up` is None where it cannot be computed, and `reason` says why."""

    p_beats_runner_up: float | None = None
    runner_up: str | None = Field(None, description="directory name of the runner-up search trial")
    n_val: int | None = None
    kappa: float | None = None
    n_eff: float | None = None
    reason: str = ""


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
    status: Status = Status.PENDING
    best_params: dict[str, Any] | None = None
    best_trial: str | None = Field(None, description="directory name of the search trial selected")
    best_value: float | None = None
    trial_order: list[str] = Field(default_factory=list, description="search trial dirs in creation order")
    final_trials: list[str] = Field(default_factory=list, description="final re-run trial dirs")
    runner_up_trial: str | None = Field(None, description="directory name of the second-best eligible search trial")
    certainty: SelectionCertainty | None = Field(None, description="how sure the selection is (None: not yet)")

    @property
    def done(self) -> bool:
        return self.status == Status.FINISHED


class Manifest(BaseModel):
    """manifest.json: the sweep's table of contents and progress (rewritten atomically on every change)."""

    model_config = ConfigDict(extra="allow")

    version: int = Field(
        1, description=f"{CURRENT_VERSION}: one Tuner per sweep; {ONE_TUNER_VERSION}: the same, its Ray state in an "
        "earlier form (`proselflc migrate`); 1 (or absent): one per study"
    )
    sweep: str
    metric: str = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    max_t: int = 0
    final_seeds: list[int] = Field(default_factory=list)
    selection_epoch: SelectionEpoch = Field("last", description="the epoch a selected trial is reported at")
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


#: In an experiment directory: trial directories whose results a full disk emptied, set aside when they run again.
LOST_DIR = ".lost"
#: Where trial dirs unknown to a restored experiment are moved (hidden from the analysis, not deleted).
ORPHANED_DIR = ".orphaned"
#: What Ray Tune writes into every trial directory; a trial whose two files are missing or empty lost its results.
TRIAL_FILES = ("params.json", "result.json")


def results_intact(trial_dir: str | Path | storage.Location, iteration: int | None = None) -> bool:
    """Whether a trial directory still holds its results: params.json and result.json present and not empty and,
    given the `iteration` (Ray's training_iteration) the trial ended at, result.json's last full line reaches it.

    A full disk leaves them empty or cut off (Ray rewrites every trial file on each copy to storage)."""
    trial_dir = storage.as_dir(trial_dir)
    for name in TRIAL_FILES:
        if (trial_dir / name).size() <= 0:
            return False
    if iteration is None:
        return True
    rows = (trial_dir / "result.json").read_text(errors="replace").splitlines()
    for line in reversed(rows):
        try:
            return json.loads(line).get("training_iteration") == iteration
        except (json.JSONDecodeError, AttributeError):
            continue
    return False


def lost_trials(sweep_dir: str | Path | storage.Location, entry: StudyEntry) -> list[str]:
    """The trial directories the study lists whose results are missing or empty (`results_intact`)."""
    root = storage.as_dir(sweep_dir)
    listed = [(entry.search_dir, name) for name in entry.trial_order]
    listed += [(entry.final_dir or entry.search_dir, name) for name in entry.final_trials]
    return [name for experiment, name in listed if not results_intact(root / experiment / name)]


def write_manifest(sweep_dir: str | Path | storage.Location, manifest: Manifest) -> None:
    (storage.as_dir(sweep_dir) / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")


#: Metrics computed with the true labels (the clean test set, the noisy subset's true labels): reported,
#: never used to select a configuration. Both lists and the guard come from `proselflc.metric_table`.
CLEAN_LABEL_METRICS = metric_table.clean_label_metrics()
#: Metrics a search may select on: computed from the noisy training labels only.
SELECTABLE_METRICS = metric_table.selectable_metrics()
uses_clean_labels = metric_table.uses_clean_labels


K = TypeVar("K")


#: The epoch whose clean test accuracy a selection reports: the trial's last (the papers' protocol), or its
#: estimated memorisation onset (Label Wave's early stopping, no clean labels: `proselflc.memorisation`).
SelectionEpoch = Literal["last", "memorisation_onset"]


def reported_row(rows: list[Mapping[str, Any]], epoch: SelectionEpoch = "last") -> Mapping[str, Any] | None:
    """The row of a trial (its rows in epoch order) that a selection reports: its last, or its row at the first
    smoothed minimum of its prediction_changes (its last where the curve has no minimum or no such row)."""
    if not rows:
        return None
    if epoch == "memorisation_onset":
        onset = memorisation.onset_of(rows)
        at = [r for r in rows if r.get("epoch") == onset]
        if at:
            return at[0]
    return rows[-1]


def select_top(
    candidates: Iterable[tuple[K, Mapping[str, Any] | None]], metric: str, mode: str, max_t: int, k: int = 2
) -> list[tuple[K, Mapping[str, Any]]]:
    """The `k` best (key, last result) by THE selection rule, best first: `select_best`'s choice, then its
    runner-up (the best of the same eligible pool without it), and so on."""
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
    sign = 1.0 if mode == "max" else -1.0
    # Stable: among equal values the trial created first stays first.
    return sorted(pool, key=lambda item: -sign * float(item[1][metric]))[:k]


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
    top = select_top(candidates, metric, mode, max_t, k=1)
    return top[0] if top else None


def read_val_correct(trial_dir: str | Path | storage.Location) -> str | None:
    """A trial's stored last-epoch validation correctness (its text), or None where it kept none."""
    path = storage.as_dir(trial_dir) / VAL_CORRECT_FILE
    return path.read_text() if path.is_file() else None


def read_certainty(sweep_dir: str | Path | storage.Location, entry: StudyEntry) -> SelectionCertainty:
    """The certainty of `entry`'s selection against its runner-up, from the two trials' stored correctness."""
    experiment = storage.as_dir(sweep_dir) / entry.search_dir
    try:
        chosen = None if entry.best_trial is None else read_val_correct(experiment / entry.best_trial)
        runner_up = None if entry.runner_up_trial is None else read_val_correct(experiment / entry.runner_up_trial)
    except OSError as exc:
        return SelectionCertainty(runner_up=entry.runner_up_trial, reason=f"could not read the trials' correctness: {exc}")
    found = selection_certainty.certainty(chosen, runner_up, runner_up_name=entry.runner_up_trial)
    return SelectionCertainty(**found.as_dict())
