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

Both are thin over `tuning.plan.SweepPlan`, the Ray-free object that holds each study's lifecycle, deals the
trials and decides what a restored experiment needs repaired (`StudyScheduler.recover` executes it). The searcher's state (a versioned `SearcherState`: the plan, every sub-searcher, the per-study schedulers)
is saved and restored by Ray Tune with the experiment, so `Tuner.restore` resumes the whole sweep; a state saved
by an earlier proselflc (version 1, a pickled `__dict__`) is rewritten once by `proselflc migrate`
(`tuning.state_migration`).
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import optuna
from ray.tune.experiment import Trial
from ray.tune.result import TRAINING_ITERATION as ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from proselflc import ray_compat, storage
from proselflc.errors import ConfigError
from proselflc.sweep_contract import LOST_DIR, ORPHANED_DIR, PHASE, STUDY, results_intact
from proselflc.tuning.plan import (
    SEARCH,
    Complete,
    Forget,
    Recovery,
    Replay,
    RestoredTrial,
    SetAside,
    Study,
    SweepPlan,
    new_plan,
)


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


#: The version of `SearcherState` this code writes; 1 was a pickled `StudySearcher.__dict__` (`proselflc migrate`).
STATE_VERSION = 2


@dataclass
class SearcherState:
    """What Ray Tune saves of the searcher with the experiment: the plan, each searchable study's Optuna searcher
    (by study key) and the per-study schedulers' state."""

    version: int
    plan: SweepPlan
    samplers: dict[str, OptunaSearch]
    scheduling: SchedulingState


class StudySearcher(Searcher):
    """Ray Tune's Searcher API over a `SweepPlan` (`tuning.plan`, which deals trials across studies and follows
    each one's lifecycle), with one Optuna sampler per searchable study, told only about its own study's trials.

    With `max_concurrent_studies` = k, a study starts only while fewer than k are active; 1 runs the studies one
    after another.
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
        sweep_plan = new_plan(
            [(plan.key, bool(plan.distributions), plan.num_samples or num_samples) for plan in plans],
            metric=metric, mode=mode, max_t=max_t, final_seeds=final_seeds,
            per_study_concurrency=per_study_concurrency, max_concurrent_studies=max_concurrent_studies,
            time_budget_s=time_budget_s, final_params=final_params,
        )
        samplers = {
            plan.key: OptunaSearch(space=dict(plan.distributions), metric=metric, mode=mode, sampler=sampler(plan))
            for plan in plans
            if plan.distributions
        }
        self.state = SearcherState(STATE_VERSION, sweep_plan, samplers, SchedulingState())

    @property
    def plan(self) -> SweepPlan:
        return self.state.plan

    @property
    def studies(self) -> dict[str, Study]:
        return self.state.plan.studies

    @property
    def samplers(self) -> dict[str, OptunaSearch]:
        return self.state.samplers

    @property
    def scheduling(self) -> SchedulingState:
        """The `StudyScheduler`'s state, saved and restored with this searcher's."""
        return self.state.scheduling

    @property
    def revision(self) -> int:
        return self.state.plan.revision

    @property
    def notes(self) -> list[str]:
        return self.state.plan.notes

    #: The most trials in flight across the sweep (Ray Tune's `max_concurrent_trials`), given on every fit by
    #: `set_max_concurrency`; None until then.
    max_concurrent: int | None = None

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Limit the trials in flight in the plan instead of in Ray Tune's ConcurrencyLimiter (True: done here).

        The limiter keeps its own set of live trials in another state file than the plan's. After a resume that
        failed, Ray restores that file from its staging directory, newer than the experiment state: the limiter
        then counted trials Ray never had as running, dealt nothing, and Ray waited for a trial forever. The
        plan's one count is reconciled with the restored trials (`recover`), so it cannot disagree with them.
        """
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        dealt = self.plan.deal(trial_id, self._suggest, max_in_flight=self.max_concurrent)
        if dealt is None:
            return Searcher.FINISHED if self.plan.finished else None
        return {STUDY: dealt.study, PHASE: dealt.phase, **dealt.params}

    def _suggest(self, key: str, trial_id: str) -> dict[str, Any]:
        sampler = self.samplers.get(key)
        return {} if sampler is None else sampler.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self.plan.result(trial_id, result):
            key = self.plan.trial_study[trial_id][0]
            if key in self.samplers:
                self.samplers[key].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        where = self.plan.trial_study.get(trial_id)
        told = self.plan.complete(trial_id, result, error)
        if told is not None and where is not None and where[0] in self.samplers:
            self.samplers[where[0]].on_trial_complete(trial_id, told.result, error=told.error)

    def forget(self, trial_id: str) -> None:
        """Take back a trial this searcher dealt but the restored experiment never recorded, to deal it again.

        Ray Tune restores the searcher from the newest state file in the driver's staging directory, which can
        be newer than the experiment state it restores (a resume that failed after dealing, in the same Ray
        session): waiting for a trial Ray does not have would stop the sweep for good.
        """
        found = self.plan.forget(trial_id)
        if found is not None and found[1] == SEARCH and found[0].key in self.samplers:
            # its Optuna trial ends as failed rather than running forever
            self.samplers[found[0].key].on_trial_complete(trial_id, None, error=True)

    def apply(self, step: Complete | Forget) -> None:
        """Execute a recovery step of the plan's (`SweepPlan.recover`) on the plan and the study's sampler."""
        if isinstance(step, Complete):
            self.on_trial_complete(step.trial.trial_id, step.trial.last_result or None, error=step.trial.error)
        else:
            self.forget(step.trial_id)

    def dirname(self, trial_id: str) -> str:
        return self.plan.dirname(trial_id)

    # -- persistence (Ray Tune saves the searcher with the experiment state) ------------------------

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.state, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            saved = pickle.load(handle)
        if not isinstance(saved, SearcherState) or saved.version != STATE_VERSION:
            version = saved.version if isinstance(saved, SearcherState) else "1 or unknown"
            raise ConfigError(
                f"the sweep's saved searcher state {checkpoint_path!r} has version {version}, and this proselflc "
                f"reads version {STATE_VERSION}: a state of an earlier version is rewritten by `proselflc migrate "
                "<sweep dir>`; a later one needs the proselflc that wrote it"
            )
        self.state = saved


class StudyScheduler(FIFOScheduler):
    """Routes each search trial to its own study's scheduler; final re-runs run to the end (FIFO).

    `make` builds a study's scheduler (ASHA, median stopping, ...) on its first trial; None stops no
    trial early. A sub-scheduler sees only its study's trials, so its cut-offs compare trials that share
    a noise rate and a method. Sub-schedulers must not PAUSE trials (`tuning.search` builds none that
    do): this scheduler runs pending trials first-in first-out.

    Ray Tune saves no scheduler state with an experiment (2.60: only the searcher's), so with `searcher`
    given, the sub-schedulers live in that searcher's `scheduling` and are restored with it on `--resume`.
    It also executes the recovery of a restored experiment (`recover`): it is the one object Ray hands its
    controller, which a replay needs.
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
        if tune_controller is not None:
            self._controller = tune_controller  # for `recover`: the only hook Ray hands its controller before a step
        config = trial.config or {}
        if self.make is None or config.get(PHASE) != "search" or trial.trial_id in self.members:
            return  # (a restored trial that was running is a member still: its scheduler already follows it)
        if trial.status == Trial.TERMINATED:
            return  # a finished trial restored by --resume: its scheduler has counted it
        key = str(config.get(STUDY))
        if key not in self.studies:
            self.studies[key] = self.make()
        self.studies[key].on_trial_add(tune_controller, trial)
        self.members[trial.trial_id] = key

    #: The controller that last added a trial (Ray hands it to `on_trial_add` only); None until one did.
    _controller: Any = None

    def recover(self) -> Recovery:
        """Decide every repair the restored experiment needs (`SweepPlan.recover`) and execute it, at once.

        Called by the monitor's `setup`: Ray 2.60's `tune.run` calls it after `TuneController.resume` has added
        every restored trial (through `on_trial_add`, which left the controller here) and before the first step,
        so before any trial starts, any new one is dealt, or the controller first checks whether it is finished
        (a replayed trial must be live by then) or saves the experiment to storage. Nothing for a fresh fit,
        which holds no trial yet.
        """
        controller, self._controller = self._controller, None
        trials = [] if controller is None else list(controller.get_trials())
        if not trials or self.searcher is None:
            return Recovery()
        first = trials[0]  # a restored trial: Ray re-pointed it to where the experiment is now
        experiment = experiment_dir(first)
        dirs = {d.name: d for d in experiment.iterdir()} if experiment.is_dir() else {}
        recovery = self.searcher.plan.recover(
            [restored_trial(t) for t in trials], dirs, lambda name: _started(dirs[name])
        )
        by_id = {t.trial_id: t for t in trials}
        for step in recovery.steps:
            if isinstance(step, Complete | Forget):
                self.searcher.apply(step)
            elif isinstance(step, Replay):
                self._replay(controller, by_id[step.trial_id], step.iteration)
            elif isinstance(step, SetAside):
                dirs[step.dirname].move(experiment / ORPHANED_DIR / step.dirname)
                # Ray uploads the driver's staging directory to storage with every save of the experiment: a
                # copy left there (a driver of the same Ray session) would bring the directory back.
                shutil.rmtree(Path(first.local_experiment_path) / step.dirname, ignore_errors=True)
        return recovery

    def _replay(self, tune_controller: Any, trial: Trial, iteration: int) -> None:
        """Run a finished trial whose results the storage lost again from its start under its id, its directory
        set aside into `.lost/`, to the iteration it ended at (`on_trial_result` stops it there)."""
        directory = trial_dir(trial)
        if directory.exists():
            directory.move(directory.parent / LOST_DIR / directory.name)
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


def restored_trial(trial: Trial) -> RestoredTrial:
    """What recovery reads of a trial Ray restored; its results are read from storage for a finished one only."""
    dirname = None if trial.path is None else PurePosixPath(trial.path).name
    ended, error = trial.status in (Trial.TERMINATED, Trial.ERROR), trial.status == Trial.ERROR
    found = RestoredTrial(trial.trial_id, ended, error, trial.last_result, dirname)
    if trial.status != Trial.TERMINATED or not found.iteration or trial.path is None:
        return found
    return replace(found, results_intact=results_intact(trial_dir(trial), found.iteration))


def experiment_dir(trial: Trial) -> storage.Location:
    """Where the trial's experiment lives, on the filesystem Ray resolved (the local disk, or a URI's)."""
    return storage.on_filesystem(trial.storage.storage_filesystem, trial.remote_experiment_path)


def trial_dir(trial: Trial) -> storage.Location:
    """The trial's directory in the experiment, on the filesystem Ray resolved (set once Ray has named it)."""
    return storage.on_filesystem(trial.storage.storage_filesystem, trial.path)


def _started(directory: storage.Location) -> bool:
    """Whether a trial directory holds what a started trial writes: its params, or a checkpoint alone.
    (iterdir, not glob: the sweep may live on object storage.)"""
    return directory.is_dir() and (
        (directory / "params.json").exists() or any(child.name.startswith("checkpoint_") for child in directory.iterdir())
    )
