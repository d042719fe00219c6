"""`proselflc migrate` for a sweep directory's saved Ray state: earlier forms rewritten once, offline, and signed again.

A sweep interrupted under an earlier proselflc holds Ray Tune's pickled state in forms the run-time code no longer
reads (manifest version 2; this code writes `CURRENT_VERSION`, which `--resume` requires):
- the searcher's state as a pickled `StudySearcher.__dict__` (version 1), in `searcher-state-*.pkl` and in the
  searcher inside `tuner.pkl` -> a versioned `SearcherState`;
- Ray's ConcurrencyLimiter counting the sweep's trials by itself (`search_gen_state-*.json`) -> the limit handed to
  the searcher's plan, as `StudySearcher.set_max_concurrency` does on every fit (a limiter that kept its own count
  waited for trials a failed resume had forgotten, the #24 hang);
- a SweepMonitor in `tuner.pkl` without the scheduler it recovers a restored experiment through -> given the one
  the same pickle holds;
- dataclasses of the saved state that lack a field added since -> the field's default;
- the signed snapshot as one `.state-backup/` directory (or `.state-backup.old/`) -> a generation
  `.state-backup/<n>/`, the only layout `state_guard` reads.

Nothing is unpickled before the last signed snapshot verifies under this user's key (as `--resume` verifies it),
unless the user vouches for the directory with `--trust-state`; the rewritten files are signed again.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import cloudpickle
from ray.tune.search.optuna import OptunaSearch

from proselflc import storage
from proselflc.errors import ConfigError
from proselflc.sweep_contract import (
    CURRENT_VERSION,
    EXPERIMENT_DIR,
    MANIFEST_FILE,
    Status,
    read_manifest,
    write_manifest,
)
from proselflc.tuning import state_guard
from proselflc.tuning.monitor import SweepMonitor
from proselflc.tuning.plan import Study, SweepPlan
from proselflc.tuning.studies import STATE_VERSION, SchedulingState, SearcherState, StudySearcher


@dataclass
class StudyProgress:
    """A study's state inside a version-1 searcher state; its pickles name `proselflc.tuning.studies.StudyProgress`,
    which `_EarlierUnpickler` maps here."""

    key: str
    status: str = Status.PENDING
    samples: int = 1
    search: OptunaSearch | None = None
    started_at: float | None = None
    search_trials: list[str] = field(default_factory=list)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    errored: set[str] = field(default_factory=set)
    search_done: set[str] = field(default_factory=set)
    final_trials: list[str] = field(default_factory=list)
    final_seed: dict[str, int] = field(default_factory=dict)
    final_done: set[str] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)
    best_trial: str | None = None
    best_params: dict[str, Any] | None = None
    best_value: float | None = None
    runner_up: str | None = None


#: Classes earlier pickles name that live elsewhere now.
_MOVED = {("proselflc.tuning.studies", "StudyProgress"): StudyProgress}

#: What a version-1 StudySearcher kept as attributes, now in its `state`.
VERSION_1_ATTRIBUTES = (
    "studies", "trial_study", "revision", "notes", "scheduling", "order", "max_t", "num_samples", "final_seeds",
    "per_study_concurrency", "max_concurrent_studies", "time_budget_s", "final_params",
)
#: Attributes earlier versions kept on an object that this version does not have.
_DROPPED = {SweepMonitor: ("_reconciled",), state_guard.StateSigner: ("_earlier_layout_dropped",)}


class _EarlierUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _MOVED.get((module, name)) or super().find_class(module, name)


def load(data: bytes) -> Any:
    """Unpickle a state file written by an earlier proselflc (call only on verified bytes: pickle can run code)."""
    return _EarlierUnpickler(io.BytesIO(data)).load()


def searcher_state(old: dict[str, Any]) -> SearcherState:
    """A version-1 state (the pickled `__dict__` of an earlier StudySearcher) as the current `SearcherState`."""
    if not isinstance(old.get("studies"), dict) or "trial_study" not in old:
        raise ConfigError(
            "the sweep's saved searcher state is neither a proselflc searcher state nor one of an earlier version; "
            "start the sweep anew under another name (its finished trials still load in `proselflc report`)"
        )
    seeds = list(old.get("final_seeds", []))
    studies: dict[str, Study] = {}
    samplers: dict[str, OptunaSearch] = {}
    for key, progress in old["studies"].items():
        saved = progress.__dict__
        search = saved.get("search")
        if search is not None:
            samplers[key] = search
        final_trials = list(saved.get("final_trials", []))
        studies[key] = Study(
            key,
            searchable=search is not None,
            # absent: saved before studies had their own trial count
            samples=saved.get("samples", old.get("num_samples", 1) if search is not None else 1),
            status=Status(saved.get("status", "pending")),
            started_at=saved.get("started_at"),
            search_trials=list(saved.get("search_trials", [])),
            params=dict(saved.get("params", {})),
            last=dict(saved.get("last", {})),
            errored=set(saved.get("errored", set())),
            search_done=set(saved.get("search_done", set())),
            final_trials=final_trials,
            # absent: saved before final seeds were recorded per trial
            final_seed=dict(saved.get("final_seed", dict(zip(final_trials, seeds)))),
            final_done=set(saved.get("final_done", set())),
            in_flight=set(saved.get("in_flight", set())),
            best_trial=saved.get("best_trial"),
            best_params=saved.get("best_params"),
            best_value=saved.get("best_value"),
            runner_up=saved.get("runner_up"),
        )
    plan = SweepPlan(
        studies=studies,
        metric=old["_metric"],
        mode=old["_mode"],
        max_t=old["max_t"],
        final_seeds=seeds,
        per_study_concurrency=old["per_study_concurrency"],
        max_concurrent_studies=old["max_concurrent_studies"],
        time_budget_s=old.get("time_budget_s"),
        final_params=dict(old.get("final_params", {})),
        trial_study=dict(old["trial_study"]),
        revision=old.get("revision", 0),
        notes=list(old.get("notes", [])),
    )
    # absent: saved before the schedulers' state was
    return SearcherState(STATE_VERSION, plan, samplers, old.get("scheduling") or SchedulingState())


def _complete(state: SearcherState) -> int:
    """Give the saved dataclasses the fields added since they were pickled (pickle restores `__dict__` only, so a
    field with a default factory would be missing); how many were added."""
    added = 0
    for obj in [state, state.plan, state.scheduling, *state.plan.studies.values()]:
        for f in dataclasses.fields(obj):
            if f.name in vars(obj):
                continue
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                raise ConfigError(
                    f"the sweep's saved state has no {type(obj).__name__}.{f.name}, and it has no default: this "
                    "proselflc cannot migrate it; resume it with the proselflc that wrote it"
                )
            setattr(obj, f.name, value)
            added += 1
    return added


def current_searcher_state(saved: Any) -> tuple[SearcherState, list[str]]:
    """A saved searcher state of any earlier form as the current one, and what changed."""
    changes = []
    if isinstance(saved, dict):
        saved = searcher_state(saved)
        changes.append(f"searcher state version 1 -> {STATE_VERSION}")
    if not isinstance(saved, SearcherState) or saved.version != STATE_VERSION:
        version = getattr(saved, "version", "unknown")
        raise ConfigError(
            f"the sweep's saved searcher state has version {version}, and this proselflc reads version "
            f"{STATE_VERSION}: resume it with the proselflc that wrote it"
        )
    added = _complete(saved)
    if added:
        changes.append(f"{added} fields added since it was saved, at their defaults")
    return saved, changes


def _searcher_file(data: bytes) -> tuple[bytes, list[str]]:
    state, changes = current_searcher_state(load(data))
    return pickle.dumps(state), changes  # as `StudySearcher.save` writes it


def _search_generator_file(data: bytes) -> tuple[bytes, list[str]]:
    state = load(data)
    limiter = state.get("name:ConcurrencyLimiter") if isinstance(state, dict) else None
    if not limiter or not limiter.get("_limit_concurrency"):
        return data, []
    limiter["_limit_concurrency"] = False
    return cloudpickle.dumps(state), ["Ray's ConcurrencyLimiter counted the trials itself -> the plan counts them"]


def _tuner_file(data: bytes) -> tuple[bytes, list[str]]:
    state = load(data)
    tune_config, run_config = state.get("_tune_config"), state.get("_run_config")
    searcher = getattr(tune_config, "search_alg", None)
    if not isinstance(searcher, StudySearcher):
        raise ConfigError("the sweep's tuner.pkl holds no proselflc searcher: it is not a proselflc sweep's state")
    changes = []
    if "state" not in vars(searcher):
        old = {name: searcher.__dict__.pop(name) for name in VERSION_1_ATTRIBUTES if name in vars(searcher)}
        searcher.state = searcher_state({**vars(searcher), **old})
        changes.append(f"its searcher's state version 1 -> {STATE_VERSION}")
    else:
        searcher.state, searcher_changes = current_searcher_state(searcher.state)
        changes += [f"its searcher's {change}" for change in searcher_changes]
    for callback in getattr(run_config, "callbacks", None) or []:
        if isinstance(callback, SweepMonitor) and getattr(callback, "scheduler", None) is None:
            callback.scheduler = tune_config.scheduler
            changes.append("its monitor is given the sweep's scheduler (it recovers a restored experiment through it)")
        for obj in (callback, getattr(callback, "_signer", None)):
            for name in _DROPPED.get(type(obj), ()):
                if vars(obj).pop(name, None) is not None:
                    changes.append(f"{type(obj).__name__}.{name} dropped")
    if not changes:
        return data, []
    return cloudpickle.dumps(state), changes  # as Ray writes it


#: Ray's state files and how each is rewritten.
_REWRITERS = (("tuner.pkl", _tuner_file), ("searcher-state-", _searcher_file), ("search_gen_state-", _search_generator_file))


def _earlier_snapshot(sweep_dir: storage.Location) -> storage.Location | None:
    """The one snapshot an earlier proselflc kept in `.state-backup/` itself (or, killed mid-swap, `.old`)."""
    candidates = (sweep_dir / state_guard.SNAPSHOT, sweep_dir / f"{state_guard.SNAPSHOT}.old")
    return next((c for c in candidates if (c / state_guard.SIGNATURES).is_file()), None)


def _earlier_layout(sweep_dir: storage.Location) -> list[storage.Location]:
    """What an earlier proselflc's one-snapshot layout left: the files in `.state-backup/` itself and the
    `.state-backup.old/` and `.new/` directories of a swap (a generation is a directory inside `.state-backup/`)."""
    root = sweep_dir / state_guard.SNAPSHOT
    found = [f for f in root.iterdir() if f.is_file()] if root.is_dir() else []
    leftovers = (sweep_dir / f"{state_guard.SNAPSHOT}.old", sweep_dir / f"{state_guard.SNAPSHOT}.new")
    return found + [d for d in leftovers if d.is_dir()]


def migrate_sweep_state(sweep_dir: Path, *, trust_state: bool = False) -> list[str]:
    """Rewrite a version-2 sweep directory's saved Ray state into the current form and sign it; what changed.

    Nothing is written for a directory already current (a second run changes nothing)."""
    root = storage.as_dir(sweep_dir)
    manifest = read_manifest(root)
    if manifest.version >= CURRENT_VERSION:
        return []
    experiment = root / EXPERIMENT_DIR
    files = state_guard.state_files(experiment)
    snapshot = state_guard.last_snapshot(root) or _earlier_snapshot(root)
    changes: list[str] = []
    if files or snapshot is not None:
        if trust_state:
            changes.append("Ray's state: not verified (--trust-state)")
        else:  # refused, naming the file, unless the last signed snapshot verifies under this user's key
            notes = state_guard.verify(root, experiment, snapshot=snapshot, command="migrate")
            changes += [f"Ray's state verified; {note}" for note in notes]
        rewritten = False
        for file in state_guard.state_files(experiment):
            rewrite = next((r for prefix, r in _REWRITERS if file.name.startswith(prefix)), None)
            if rewrite is None:
                continue  # experiment_state-*.json: Ray's own trials, in no proselflc form
            data = file.read_bytes()
            new, what = rewrite(data)
            if new != data:
                file.write_bytes(new)
                rewritten = True
            changes += [f"{EXPERIMENT_DIR}/{file.name}: {change}" for change in what]
        earlier = _earlier_layout(root)
        if (rewritten or earlier) and state_guard.StateSigner().sign(root, experiment, experiment):
            changes.append(f"Ray's state signed again with your key, as {state_guard.SNAPSHOT}/"
                           f"{state_guard.last_snapshot(root).name}/")
        if earlier and state_guard.last_snapshot(root) is not None:  # never the only snapshot
            for leftover in earlier:
                if leftover.is_dir():
                    leftover.remove_tree()
                else:
                    leftover.unlink()
            changes.append(f"the earlier one-snapshot layout of {state_guard.SNAPSHOT}/ removed")
    write_manifest(root, manifest.model_copy(update={"version": CURRENT_VERSION}))
    changes.append(f"{MANIFEST_FILE}: version {manifest.version} -> {CURRENT_VERSION} (its Ray state in this form)")
    return changes
