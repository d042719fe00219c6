"""Many studies in one Ray Tune Tuner: a searcher and a scheduler that keep each study to itself.

A sweep is a set of (noise rate, method) studies. Running them side by side in ONE Tuner keeps a
cluster busy (no study waits for another's ASHA tail, one trial-actor start-up for the whole sweep),
but each study must still search and early-stop on its own:

- `StudySearcher` multiplexes one seeded Optuna sampler per study (TPE, random, grid, CMA-ES, GP or QMC,
  made by `tuning.search`; each behind Ray Tune's `OptunaSearch`, told only about its own study's trials), deals new trials out across studies, caps each study's
  trials in flight so its sampler sees results before it suggests more, and hands out a study's
  final re-runs (its best configuration x the final seeds, full length) as soon as its search ends.
- `StudyScheduler` routes every trial to its own study's scheduler (ASHA, the median stopping rule, or
  none), so a rung or a median compares trials of one study only: a 60%-noise study's low val_accuracy
  is never judged against a 0%-noise study's. Final re-runs are never stopped early.

The searcher's state (every sub-searcher, what each study dealt and learnt) is saved and restored by
Ray Tune with the experiment, so `Tuner.restore` resumes the whole sweep.
"""

from __future__ import annotations

import math
import pickle
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from ray.tune.experiment import Trial
from ray.tune.result import TRAINING_ITERATION as ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from proselflc import ray_compat, storage
from proselflc.sweep_contract import LOST_DIR, PHASE, STUDY, results_intact, select_top, trial_dirname


@dataclass(frozen=True)
class StudyPlan:
    """What one study searches: its key, its Optuna distributions ({} = one fixed-config trial), and its
    trial count when it is not the sweep's num_samples (a grid runs exactly its combinations)."""

    key: str
    distributions: dict[str, optuna.distributions.BaseDistribution]
    num_samples: int | None = None


#: Makes one study's sampler from its plan (a grid sampler needs the study's choices).
SamplerFactory = Callable[[StudyPlan], optuna.samplers.BaseSampler]
#: Makes one study's early-stopping scheduler.
SchedulerFactory = Callable[[], TrialScheduler]


@dataclass
class SchedulingState:
    """The per-study schedulers (ASHA's rungs, the median rule's histories) and which search trial each one
    follows. It lives in the searcher, so Ray Tune saves it in the same pickle as the searcher, at the same
    moment as the trials: a resumed sweep's schedulers stop exactly the trials an uninterrupted run stops."""

    studies: dict[str, TrialScheduler] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)  # search trial id -> study, from its add until it ends
    #: Finished trials whose results storage lost, run again: trial id -> the iteration they ended at before.
    replay: dict[str, int] = field(default_factory=dict)


@dataclass
class StudyProgress:
    """A study's state inside the searcher (pickled with it)."""

    key: str
    status: str = "pending"
    samples: int = 1
    search: OptunaSearch | None = None
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
        return self.status in ("searching", "searched")


class StudySearcher(Searcher):
    """One Optuna sampler per study behind one Ray Tune searcher; see the module docstring.

    Trials are dealt in this order: a searched study's final re-runs first (they are the longest
    trials, so starting them early shortens the sweep's tail), then a search trial of the study with
    the fewest trials in flight (ties: the study listed first). With `max_concurrent_studies` = k, a
    study starts only while fewer than k are active; 1 runs the studies one after another.
    """

    def __init__(
        self,
        plans: Sequence[StudyPlan],
        *,
        metric: str,
        mode: str,
        max_t: int,
        num_samples: int,
        final_seeds: Sequence[int],
        sampler: SamplerFactory,
        per_study_concurrency: int,
        max_concurrent_studies: int | None = None,
        time_budget_s: float | None = None,
        final_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.max_t = max_t
        self.num_samples = num_samples
        self.final_seeds = list(final_seeds)
        self.per_study_concurrency = per_study_concurrency
        self.max_concurrent_studies = max_concurrent_studies or len(plans)
        self.time_budget_s = time_budget_s
        self.final_params = dict(final_params or {})
        self.order = [plan.key for plan in plans]
        self.studies: dict[str, StudyProgress] = {}
        for plan in plans:
            progress = StudyProgress(plan.key, samples=1)
            if plan.distributions:
                progress.samples = plan.num_samples or num_samples
                progress.search = OptunaSearch(
                    space=dict(plan.distributions), metric=metric, mode=mode, sampler=sampler(plan)
                )
            self.studies[plan.key] = progress
        self.trial_study: dict[str, tuple[str, str]] = {}  # trial id -> (study, phase)
        #: Bumped on every trial dealt or ended; the sweep monitor rewrites the manifest when it moves.
        self.revision = 0
        #: Human-readable events (a study searched, its choice) for the monitor to print.
        self.notes: list[str] = []
        #: The `StudyScheduler`'s state, saved and restored with this searcher's.
        self.scheduling = SchedulingState()

    # -- dealing ----------------------------------------------------------------------------------

    def _search_open(self, study: StudyProgress) -> bool:
        """Whether the study may still start search trials (budget of trials and of time)."""
        if len(study.search_trials) >= study.samples:
            return False
        if self.time_budget_s is not None and study.started_at is not None:
            return time.time() - study.started_at < self.time_budget_s
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for study in self.studies.values():
            # A time budget can close a search after its last trial ended: end it here.
            if study.status == "searching" and not self._search_open(study) and not study.in_flight:
                self._end_search(study)
        if all(study.status == "finished" for study in self.studies.values()):
            return Searcher.FINISHED
        for study in self._by_priority():
            if study.status == "searched" and len(study.final_trials) < len(self.final_seeds):
                seed = next(s for s in self.final_seeds if s not in study.final_seed.values())
                study.final_trials.append(trial_id)
                study.final_seed[trial_id] = seed
                params = {**(study.best_params or {}), **self.final_params, "train.seed": seed}
                return self._dealt(trial_id, study, "final", params)
        for study in sorted(self._by_priority(), key=lambda s: len(s.in_flight)):
            if study.status not in ("pending", "searching") or len(study.in_flight) >= self.per_study_concurrency:
                continue
            if study.status == "pending":
                if sum(s.active for s in self.studies.values()) >= self.max_concurrent_studies:
                    continue
                self._set_status(study, "searching")
                study.started_at = time.time()
            if not self._search_open(study):
                continue
            params = study.search.suggest(trial_id) if study.search is not None else {}
            study.search_trials.append(trial_id)
            study.params[trial_id] = dict(params)
            return self._dealt(trial_id, study, "search", params)
        return None

    def _by_priority(self) -> list[StudyProgress]:
        """Studies in plan order (noise rates outermost), the ones already running first."""
        studies = [self.studies[key] for key in self.order]
        return [s for s in studies if s.active] + [s for s in studies if s.status == "pending"]

    def _dealt(self, trial_id: str, study: StudyProgress, phase: str, params: dict[str, Any]) -> dict[str, Any]:
        study.in_flight.add(trial_id)
        self.trial_study[trial_id] = (study.key, phase)
        self.revision += 1
        return {STUDY: study.key, PHASE: phase, **params}

    # -- learning ---------------------------------------------------------------------------------

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        where = self.trial_study.get(trial_id)
        if where is None:
            return
        study = self.studies[where[0]]
        if where[1] == "search" and trial_id not in study.search_done:
            # A trial restored from its checkpoint reports again the epochs after it (same values): Optuna
            # already has those steps when this searcher's state was saved after them, and warns on a repeat.
            seen = study.last.get(trial_id, {}).get(ITERATION, 0)
            study.last[trial_id] = _row(result)
            repeat = result.get(ITERATION, 0) <= seen
            if study.search is not None and _finite(result.get(self.metric)) and not repeat:
                study.search.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        where = self.trial_study.get(trial_id)
        if where is None:
            return  # a trial this searcher never dealt (e.g. restored from a newer experiment state)
        key, phase = where
        study = self.studies[key]
        study.in_flight.discard(trial_id)
        self.revision += 1
        if phase == "final":
            study.final_done.add(trial_id)
            if study.status == "searched" and len(study.final_done) >= len(self.final_seeds):
                self._set_status(study, "finished")
            return
        if trial_id in study.search_done:
            return  # an errored trial that a resume ran again: its study has moved on
        study.search_done.add(trial_id)
        if result:
            study.last[trial_id] = _row(result)
        if error:
            study.errored.add(trial_id)
        if study.search is not None:
            usable = _finite((result or {}).get(self.metric))
            study.search.on_trial_complete(trial_id, result if usable else None, error=error or not usable)
        if not self._search_open(study) and len(study.search_done) == len(study.search_trials):
            self._end_search(study)

    def forget(self, trial_id: str) -> None:
        """Take back a trial this searcher dealt but the restored experiment never recorded, to deal it again.

        Ray Tune restores the searcher from the newest state file in the driver's staging directory, which can
        be newer than the experiment state it restores (a resume that failed after dealing, in the same Ray
        session): waiting for a trial Ray does not have would stop the sweep for good.
        """
        where = self.trial_study.pop(trial_id, None)
        if where is None:
            return
        key, phase = where
        study = self.studies[key]
        study.in_flight.discard(trial_id)
        if phase == "final":
            study.final_trials.remove(trial_id)
            study.final_seed.pop(trial_id, None)
        else:
            study.search_trials.remove(trial_id)
            study.params.pop(trial_id, None)
            study.last.pop(trial_id, None)
            if study.search is not None:  # its Optuna trial ends as failed rather than running forever
                study.search.on_trial_complete(trial_id, None, error=True)
        self.revision += 1
        self.notes.append(f"{key}: {phase} trial {trial_id} was dealt but never started by Ray: dealt again")

    def _end_search(self, study: StudyProgress) -> None:
        """Select the study's configuration with THE selection rule and queue its final re-runs."""
        candidates = ((tid, study.last.get(tid)) for tid in study.search_trials if tid not in study.errored)
        top = select_top(candidates, self.metric, self.mode, self.max_t, k=2)
        best = top[0] if top else None
        study.runner_up = top[1][0] if len(top) > 1 else None
        if best is None:
            self.notes.append(
                f"{study.key}: no search trial reported a usable {self.metric} (all diverged or errored): "
                "no final runs"
            )
            self._set_status(study, "finished")
            return
        trial_id, last = best
        study.best_trial, study.best_params = trial_id, study.params[trial_id]
        study.best_value = float(last[self.metric])
        self.notes.append(f"{study.key}: best {self.metric} {study.best_value:.4f} with {study.best_params}")
        self._set_status(study, "searched" if self.final_seeds else "finished")

    def _set_status(self, study: StudyProgress, status: str) -> None:
        study.status = status
        self.revision += 1

    def dirname(self, trial_id: str) -> str:
        key, phase = self.trial_study[trial_id]
        return trial_dirname(key, phase, trial_id)

    # -- persistence (Ray Tune saves the searcher with the experiment state) ------------------------

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))
        for study in self.studies.values():
            if "samples" not in study.__dict__:  # saved before studies had their own trial count
                study.samples = self.num_samples if study.search is not None else 1
            if "final_seed" not in study.__dict__:  # saved before final seeds were recorded per trial
                study.final_seed = dict(zip(study.final_trials, self.final_seeds))
        self.__dict__.setdefault("scheduling", SchedulingState())  # saved before the schedulers' state was


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _row(result: dict[str, Any]) -> dict[str, Any]:
    """The scalar part of a reported result: what selection reads."""
    return {k: v for k, v in result.items() if isinstance(v, bool | int | float | str) or v is None}


class StudyScheduler(FIFOScheduler):
    """Routes each search trial to its own study's scheduler; final re-runs run to the end (FIFO).

    `make` builds a study's scheduler (ASHA, median stopping, ...) on its first trial; None stops no
    trial early. A sub-scheduler sees only its study's trials, so its cut-offs compare trials that share
    a noise rate and a method. Sub-schedulers must not PAUSE trials (`tuning.search` builds none that
    do): this scheduler runs pending trials first-in first-out.

    Ray Tune saves no scheduler state with an experiment (2.60: only the searcher's), so with `searcher`
    given, the sub-schedulers live in that searcher's `scheduling` and are restored with it on `--resume`.
    """

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        make: SchedulerFactory | None,
        name: str = "asha",
        searcher: StudySearcher | None = None,
    ) -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self.make = make
        self.name = name
        self.searcher = searcher
        self._own = SchedulingState()

    @property
    def state(self) -> SchedulingState:
        """The searcher's `scheduling` (read each time: restoring the searcher replaces it), else this one's."""
        return self._own if self.searcher is None else self.searcher.scheduling

    @property
    def studies(self) -> dict[str, TrialScheduler]:
        return self.state.studies

    @property
    def members(self) -> dict[str, str]:
        return self.state.members

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return metric in (None, self._metric) and mode in (None, self._mode)

    def _member(self, trial: Trial) -> TrialScheduler | None:
        key = self.members.get(trial.trial_id)
        return None if key is None else self.studies[key]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        ray_compat.follow_experiment_storage(tune_controller, trial)
        config = trial.config or {}
        if trial.status == Trial.TERMINATED and tune_controller is not None:
            self._replay_if_lost(tune_controller, trial)
        if self.make is None or config.get(PHASE) != "search" or trial.trial_id in self.members:
            return  # (a restored trial that was running is a member still: its scheduler already follows it)
        if trial.status == Trial.TERMINATED:
            return  # a finished trial restored by --resume: its scheduler has counted it
        key = str(config.get(STUDY))
        if key not in self.studies:
            self.studies[key] = self.make()
        self.studies[key].on_trial_add(tune_controller, trial)
        self.members[trial.trial_id] = key

    def _replay_if_lost(self, tune_controller: Any, trial: Trial) -> None:
        """A finished trial restored by --resume whose results storage lost (a full disk): its directory is set
        aside (into `.lost/`) and it runs again from its start under its id, to the iteration it ended at."""
        if trial.path is None:
            return
        directory = storage.on_filesystem(trial.storage.storage_filesystem, trial.path)
        iteration = int((trial.last_result or {}).get(ITERATION, 0))
        if not iteration or results_intact(directory, iteration):
            return
        if directory.exists():
            storage.move(directory, directory.parent / LOST_DIR / directory.name)
        shutil.rmtree(trial.local_path, ignore_errors=True)  # the driver's staging copy Ray would append to
        self.state.replay[trial.trial_id] = iteration
        ray_compat.run_again_from_start(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        replay = self.state.replay.get(trial.trial_id)
        if replay is not None and result.get(ITERATION, 0) >= replay:
            return TrialScheduler.STOP  # where it ended before its results were lost (e.g. ASHA stopped it)
        scheduler = self._member(trial)
        if scheduler is None:
            return TrialScheduler.CONTINUE
        decision = scheduler.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.PAUSE:
            raise RuntimeError(f"{type(scheduler).__name__} paused trial {trial.trial_id}: a per-study scheduler "
                               "may only continue or stop trials")
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        scheduler = self._member(trial)
        if scheduler is not None:
            scheduler.on_trial_complete(tune_controller, trial, result)
            self.members.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        scheduler = self._member(trial)
        if scheduler is not None:
            scheduler.on_trial_remove(tune_controller, trial)
            self.members.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"Per-study {self.name} for {len(self.studies)} studies"
