"""The sweep's plan: every study's lifecycle as one typed object, without Ray.

A `Study` goes pending -> searching -> searched -> finished (`sweep_contract.Status`) through its methods: it
starts, is dealt search trials, learns their results, ends its search with THE selection rule, is dealt its
final re-runs and finishes when they have. A method called in the wrong state raises `LifecycleError` naming the
study, the trial and the state, rather than corrupting the manifest. `SweepPlan` holds every study and deals the
sweep's next trial across them; `recover` decides, in one place, every repair a restored experiment needs.

Ray Tune's side is thin: `tuning.studies.StudySearcher` maps the Searcher API onto this plan (and owns the
Optuna samplers, which the plan only names by study), `StudyScheduler` routes trials by study, and
`tuning.monitor.SweepMonitor` writes each study's `to_entry` into manifest.json.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proselflc.sweep_contract import Status, StudyEntry, select_top, trial_dirname

#: Ray Tune's count of a trial's reports (`ray.tune.result.TRAINING_ITERATION`; tests/test_studies.py checks it).
ITERATION = "training_iteration"
SEARCH, FINAL = "search", "final"


class LifecycleError(RuntimeError):
    """A lifecycle step asked of a study in a state that does not allow it (a bug, never a user's input)."""


@dataclass
class Study:
    """One study's progress: what it dealt, what it learnt, what it chose. Trial ids are Ray Tune's."""

    key: str
    searchable: bool = False  # has a search space; False: one fixed-config search trial
    samples: int = 1
    status: Status = Status.PENDING
    started_at: float | None = None
    search_trials: list[str] = field(default_factory=list)  # trial ids, creation order
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    errored: set[str] = field(default_factory=set)
    search_done: set[str] = field(default_factory=set)
    final_trials: list[str] = field(default_factory=list)
    final_seed: dict[str, int] = field(default_factory=dict)  # final trial id -> its seed
    final_done: set[str] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)
    best_trial: str | None = None
    best_params: dict[str, Any] | None = None
    best_value: float | None = None
    runner_up: str | None = None  # the second-best eligible search trial (the selection's certainty)

    @property
    def active(self) -> bool:
        return self.status in (Status.SEARCHING, Status.SEARCHED)

    def _require(self, step: str, *allowed: Status, trial_id: str | None = None) -> None:
        if self.status not in allowed:
            what = f"{step} {trial_id}" if trial_id else step
            raise LifecycleError(
                f"study {self.key!r}: cannot {what} while {self.status.value}; only while "
                f"{' or '.join(s.value for s in allowed)}"
            )

    def search_open(self, now: float, time_budget_s: float | None) -> bool:
        """Whether the study may still start search trials (budget of trials and of time)."""
        if len(self.search_trials) >= self.samples:
            return False
        if time_budget_s is not None and self.started_at is not None:
            return now - self.started_at < time_budget_s
        return True

    def start(self, now: float) -> None:
        self._require("start", Status.PENDING)
        self.status, self.started_at = Status.SEARCHING, now

    def deal_search(self, trial_id: str, params: Mapping[str, Any]) -> None:
        self._require("deal search trial", Status.SEARCHING, trial_id=trial_id)
        self.search_trials.append(trial_id)
        self.params[trial_id] = dict(params)
        self.in_flight.add(trial_id)

    def deal_final(self, trial_id: str, seeds: Sequence[int]) -> int:
        """Deal a final re-run with the first of `seeds` not dealt yet; returns that seed."""
        self._require("deal final trial", Status.SEARCHED, trial_id=trial_id)
        seed = next((s for s in seeds if s not in self.final_seed.values()), None)
        if seed is None:
            raise LifecycleError(f"study {self.key!r}: cannot deal final trial {trial_id}: every seed is dealt")
        self.final_trials.append(trial_id)
        self.final_seed[trial_id] = seed
        self.in_flight.add(trial_id)
        return seed

    def finals_open(self, seeds: Sequence[int]) -> bool:
        return self.status == Status.SEARCHED and len(self.final_trials) < len(seeds)

    def learn(self, trial_id: str, row: dict[str, Any]) -> bool:
        """Keep a search trial's latest result; False when it repeats an iteration already seen (a trial restored
        from its checkpoint reports again the epochs after it) or the trial's search result is already final."""
        if trial_id in self.search_done:
            return False
        seen = self.last.get(trial_id, {}).get(ITERATION, 0)
        self.last[trial_id] = row
        return row.get(ITERATION, 0) > seen

    def complete_search(self, trial_id: str, row: dict[str, Any] | None, error: bool) -> bool:
        """A search trial ended; False when it had ended before (an errored trial that a resume ran again)."""
        if trial_id not in self.search_trials:
            raise LifecycleError(f"study {self.key!r}: cannot complete search trial {trial_id}: it was not dealt")
        self.in_flight.discard(trial_id)
        if trial_id in self.search_done:
            return False
        self.search_done.add(trial_id)
        if row:
            self.last[trial_id] = row
        if error:
            self.errored.add(trial_id)
        return True

    def complete_final(self, trial_id: str, n_seeds: int) -> None:
        if trial_id not in self.final_trials:
            raise LifecycleError(f"study {self.key!r}: cannot complete final trial {trial_id}: it was not dealt")
        self.in_flight.discard(trial_id)
        self.final_done.add(trial_id)
        if self.status == Status.SEARCHED and len(self.final_done) >= n_seeds:
            self.status = Status.FINISHED

    def search_ended(self, now: float, time_budget_s: float | None) -> bool:
        """Every search trial it may deal is dealt and ended."""
        return not self.search_open(now, time_budget_s) and len(self.search_done) == len(self.search_trials)

    def end_search(self, metric: str, mode: str, max_t: int, has_finals: bool) -> str:
        """Select the configuration with THE selection rule (searched, or finished without finals); a note."""
        self._require("end its search", Status.SEARCHING)
        candidates = ((tid, self.last.get(tid)) for tid in self.search_trials if tid not in self.errored)
        top = select_top(candidates, metric, mode, max_t, k=2)
        self.runner_up = top[1][0] if len(top) > 1 else None
        if not top:
            self.status = Status.FINISHED
            return f"{self.key}: no search trial reported a usable {metric} (all diverged or errored): no final runs"
        trial_id, last = top[0]
        self.best_trial, self.best_params = trial_id, self.params[trial_id]
        self.best_value = float(last[metric])
        self.status = Status.SEARCHED if has_finals else Status.FINISHED
        return f"{self.key}: best {metric} {self.best_value:.4f} with {self.best_params}"

    def forget(self, trial_id: str) -> str:
        """Take back a dealt trial as if never dealt (its final seed is free again); returns its phase."""
        self.in_flight.discard(trial_id)
        if trial_id in self.final_trials:
            self.final_trials.remove(trial_id)
            self.final_seed.pop(trial_id, None)
            return FINAL
        if trial_id not in self.search_trials:
            raise LifecycleError(f"study {self.key!r}: cannot forget trial {trial_id}: it was not dealt")
        self.search_trials.remove(trial_id)
        self.params.pop(trial_id, None)
        self.last.pop(trial_id, None)
        return SEARCH

    def dirname(self, trial_id: str) -> str:
        return trial_dirname(self.key, FINAL if trial_id in self.final_trials else SEARCH, trial_id)

    def to_entry(self, entry: StudyEntry) -> None:
        """Write this study's progress into its manifest entry (the entry keeps what the plan does not know:
        dataset, model, directories, certainty)."""
        if entry.study != self.key:
            raise LifecycleError(f"study {self.key!r}: cannot write into the manifest entry of {entry.study!r}")
        entry.status = self.status
        entry.trial_order = [self.dirname(t) for t in self.search_trials]
        entry.final_trials = [self.dirname(t) for t in self.final_trials]
        entry.best_params = self.best_params
        entry.best_value = self.best_value
        entry.best_trial = None if self.best_trial is None else self.dirname(self.best_trial)
        entry.runner_up_trial = None if self.runner_up is None else self.dirname(self.runner_up)


@dataclass(frozen=True)
class Dealt:
    """A trial the plan dealt: its study, phase and the parameters it runs with."""

    study: str
    phase: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Told:
    """What a search trial's sampler must hear when it ends: its result (None: unusable) and whether it failed."""

    result: dict[str, Any] | None
    error: bool


@dataclass(frozen=True)
class RestoredTrial:
    """A trial as a restored experiment holds it, as recovery reads it: ended (terminated or errored) or not, its
    last result, its directory under the experiment (None: never made) and, for a finished trial, whether that
    directory still holds its results up to the iteration it ended at (`sweep_contract.results_intact`)."""

    trial_id: str
    ended: bool = False
    error: bool = False
    last_result: dict[str, Any] | None = None
    dirname: str | None = None
    results_intact: bool = True

    @property
    def iteration(self) -> int:
        """The reports it made (Ray Tune's training_iteration): 0 before its first."""
        return int((self.last_result or {}).get(ITERATION, 0))


@dataclass(frozen=True)
class Complete:
    """A trial the plan (saved a moment before the experiment) still has in flight that the experiment has as
    ended: the plan learns its end, or its study would wait for it forever."""

    trial: RestoredTrial


@dataclass(frozen=True)
class Forget:
    """A trial the plan dealt that the experiment never recorded: taken back, to be dealt again (same final seed)."""

    trial_id: str


@dataclass(frozen=True)
class Replay:
    """A finished trial whose results the storage lost (a full disk): its directory is set aside into `.lost/` and
    it runs again from its start under its id, stopped at the `iteration` it ended at before."""

    trial_id: str
    dirname: str
    iteration: int


@dataclass(frozen=True)
class SetAside:
    """A trial directory the experiment does not know but that a killed driver started: its study dealt that
    trial again under a new id, so it would count twice. Moved into `.orphaned/`, never deleted."""

    dirname: str


#: One repair of a restored experiment.
Step = Complete | Forget | Replay | SetAside


@dataclass(frozen=True)
class Recovery:
    """Every repair a restored experiment needs, in the order to apply them (`SweepPlan.recover`)."""

    steps: tuple[Step, ...] = ()

    @property
    def complete(self) -> list[str]:
        return [step.trial.trial_id for step in self.steps if isinstance(step, Complete)]

    @property
    def forget(self) -> list[str]:
        return [step.trial_id for step in self.steps if isinstance(step, Forget)]

    @property
    def replay(self) -> dict[str, int]:
        return {step.trial_id: step.iteration for step in self.steps if isinstance(step, Replay)}

    @property
    def set_aside(self) -> list[str]:
        return [step.dirname for step in self.steps if isinstance(step, SetAside)]


def _every_directory_started(name: str) -> bool:
    return True


#: Suggests a search trial's parameters: (study key, trial id) -> params ({} for a study without a space).
Suggest = Callable[[str, str], dict[str, Any]]


@dataclass
class SweepPlan:
    """Every study of a sweep and how trials are dealt across them.

    Dealing order: a searched study's final re-runs first (the longest trials; starting them early shortens the
    sweep's tail), then a search trial of the study with the fewest trials in flight (ties: the study listed
    first). A study starts only while fewer than `max_concurrent_studies` are active.
    """

    studies: dict[str, Study]
    metric: str
    mode: str
    max_t: int
    final_seeds: list[int]
    per_study_concurrency: int
    max_concurrent_studies: int
    time_budget_s: float | None = None
    final_params: dict[str, Any] = field(default_factory=dict)
    trial_study: dict[str, tuple[str, str]] = field(default_factory=dict)  # trial id -> (study, phase)
    #: Bumped on every trial dealt or ended and every status change; the monitor rewrites the manifest when it moves.
    revision: int = 0
    #: Human-readable events (a study searched, its choice) for the monitor to print.
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return all(study.status == Status.FINISHED for study in self.studies.values())

    @property
    def in_flight(self) -> int:
        """Trials dealt and not ended, across studies."""
        return sum(len(study.in_flight) for study in self.studies.values())

    def study_of(self, trial_id: str) -> tuple[Study, str] | None:
        where = self.trial_study.get(trial_id)
        return None if where is None else (self.studies[where[0]], where[1])

    def deal(
        self, trial_id: str, suggest: Suggest, now: float | None = None, max_in_flight: int | None = None
    ) -> Dealt | None:
        """The next trial (None: nothing to deal now; see `finished` for whether anything is left). With
        `max_in_flight`, none while that many trials of the sweep are in flight."""
        now = time.time() if now is None else now
        for study in self.studies.values():
            # A time budget can close a search after its last trial ended: end it here.
            if study.status == Status.SEARCHING and not study.search_open(now, self.time_budget_s) and not study.in_flight:
                self._end_search(study)
        if self.finished or (max_in_flight is not None and self.in_flight >= max_in_flight):
            return None
        for study in self._by_priority():
            if study.finals_open(self.final_seeds):
                seed = study.deal_final(trial_id, self.final_seeds)
                params = {**(study.best_params or {}), **self.final_params, "train.seed": seed}
                return self._dealt(trial_id, study, FINAL, params)
        for study in sorted(self._by_priority(), key=lambda s: len(s.in_flight)):
            if study.status not in (Status.PENDING, Status.SEARCHING):
                continue
            if len(study.in_flight) >= self.per_study_concurrency:
                continue
            if study.status == Status.PENDING:
                if sum(s.active for s in self.studies.values()) >= self.max_concurrent_studies:
                    continue
                study.start(now)
                self.revision += 1
            if not study.search_open(now, self.time_budget_s):
                continue
            params = suggest(study.key, trial_id)
            study.deal_search(trial_id, params)
            return self._dealt(trial_id, study, SEARCH, params)
        return None

    def _by_priority(self) -> list[Study]:
        """Studies in plan order (noise rates outermost), the ones already running first."""
        studies = list(self.studies.values())
        return [s for s in studies if s.active] + [s for s in studies if s.status == Status.PENDING]

    def _dealt(self, trial_id: str, study: Study, phase: str, params: dict[str, Any]) -> Dealt:
        self.trial_study[trial_id] = (study.key, phase)
        self.revision += 1
        return Dealt(study.key, phase, dict(params))

    def result(self, trial_id: str, result: dict[str, Any]) -> bool:
        """A search trial reported; True when its sampler should hear it (a new iteration with a finite metric)."""
        found = self.study_of(trial_id)
        if found is None or found[1] != SEARCH:
            return False
        fresh = found[0].learn(trial_id, _row(result))
        return fresh and _finite(result.get(self.metric))

    def complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False, now: float | None = None
    ) -> Told | None:
        """A trial ended; for a search trial's first end, what its sampler must hear. Ends its study's search when
        that was its last trial, and finishes a study whose final re-runs all ended."""
        found = self.study_of(trial_id)
        if found is None:
            return None  # a trial this plan never dealt (e.g. restored from a newer experiment state)
        study, phase = found
        self.revision += 1
        if phase == FINAL:
            before = study.status
            study.complete_final(trial_id, len(self.final_seeds))
            self.revision += study.status != before
            return None
        if not study.complete_search(trial_id, _row(result) if result else None, error):
            return None
        usable = _finite((result or {}).get(self.metric))
        told = Told(result if usable else None, error or not usable)
        if study.search_ended(time.time() if now is None else now, self.time_budget_s):
            self._end_search(study)
        return told

    def forget(self, trial_id: str) -> tuple[Study, str] | None:
        """Take back a trial dealt but never recorded by the experiment, to deal it again; its study and phase."""
        found = self.study_of(trial_id)
        if found is None:
            return None
        del self.trial_study[trial_id]
        study, phase = found
        study.forget(trial_id)
        self.revision += 1
        self.notes.append(f"{study.key}: {phase} trial {trial_id} was dealt but never started by Ray: dealt again")
        return study, phase

    def _end_search(self, study: Study) -> None:
        self.notes.append(study.end_search(self.metric, self.mode, self.max_t, bool(self.final_seeds)))
        self.revision += 1

    def dirname(self, trial_id: str) -> str:
        key, phase = self.trial_study[trial_id]
        return trial_dirname(key, phase, trial_id)

    def recover(
        self,
        restored: Sequence[RestoredTrial],
        trial_dirs: Iterable[str] = (),
        started: Callable[[str], bool] = _every_directory_started,
    ) -> Recovery:
        """After a restore, every repair that makes the plan and the storage agree with the trials the experiment
        holds, decided here once (the adapters only execute the steps), in this order:

        1. `Complete` the in-flight trials the experiment has as ended, then `Forget` the in-flight trials it does
           not have at all (per study in plan order, trial ids sorted): no study waits for a trial forever.
           Before the replays, which clear the last result Ray holds for a trial.
        2. `Replay` each finished trial whose results are not intact, in the experiment's order.
        3. `SetAside` each of `trial_dirs` (names under the experiment) that no restored trial owns and that a
           killed driver `started` (asked only for those; hidden names such as `.lost` are not trials), sorted.

        Nothing for an experiment that agrees with the plan and kept every result."""
        trials = {t.trial_id: t for t in restored}
        steps: list[Step] = []
        for study in self.studies.values():
            steps += [Complete(trials[t]) for t in sorted(study.in_flight) if t in trials and trials[t].ended]
            steps += [Forget(t) for t in sorted(study.in_flight) if t not in trials]
        steps += [
            Replay(t.trial_id, t.dirname, t.iteration)
            for t in restored
            if t.ended and not t.error and t.iteration and not t.results_intact and t.dirname
        ]
        known = {t.dirname for t in restored if t.dirname}
        unknown = sorted(name for name in trial_dirs if not name.startswith(".") and name not in known)
        steps += [SetAside(name) for name in unknown if started(name)]
        return Recovery(tuple(steps))


def new_plan(
    studies: Sequence[tuple[str, bool, int]],
    *,
    metric: str,
    mode: str,
    max_t: int,
    final_seeds: Sequence[int],
    per_study_concurrency: int,
    max_concurrent_studies: int | None = None,
    time_budget_s: float | None = None,
    final_params: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """A plan of pending studies from (key, searchable, samples), in run order."""
    return SweepPlan(
        studies={key: Study(key, searchable, samples if searchable else 1) for key, searchable, samples in studies},
        metric=metric, mode=mode, max_t=max_t, final_seeds=list(final_seeds),
        per_study_concurrency=per_study_concurrency,
        max_concurrent_studies=max_concurrent_studies or len(studies),
        time_budget_s=time_budget_s, final_params=dict(final_params or {}),
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _row(result: dict[str, Any]) -> dict[str, Any]:
    """The scalar part of a reported result: what selection reads."""
    return {k: v for k, v in result.items() if isinstance(v, bool | int | float | str) or v is None}
