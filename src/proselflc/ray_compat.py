"""Where proselflc leans on Ray behaviour that its public API does not promise: all of it, in one place.

Each shim names the Ray version it was checked against (`CHECKED_RAY`). When Ray is upgraded, this module is
what to re-read: `tests/test_ray_compat.py` checks every shim against the installed Ray. Ray is imported inside
the functions, so the analysis can read `RESULT_BOOKKEEPING_KEYS` without starting Ray's import.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray import tune
    from ray.tune.experiment import Trial

#: The Ray release every shim below was read against and tested with.
CHECKED_RAY = "2.60.0"

#: Ray 2.60: the bookkeeping keys Ray Tune adds to every reported result (`ray.tune.result.AUTO_RESULT_KEYS`
#: and the controller's own); they are not metrics of the run. The analysis drops them from its rows.
RESULT_BOOKKEEPING_KEYS = frozenset(
    {
        "timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "trial_id", "date",
        "time_this_iter_s", "pid", "hostname", "node_ip", "config", "time_since_restore",
        "iterations_since_restore", "timesteps_total", "timesteps_since_restore", "episodes_total",
        "experiment_id", "experiment_tag", "warmup_time",
    }
)
#: Ray 2.60's own switch for local-only Ray (its default on macOS/Windows), read when `ray` is imported: "0"
#: keeps the node IP at 127.0.0.1, so every process it starts (GCS, raylet, workers, agents, metrics) binds it.
RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def follow_experiment_storage(tune_controller: Any, trial: Trial) -> None:
    """Give a trial just added to the Tuner the storage of the experiment's first trial (call on trial add).

    Ray 2.60: a restored Tuner re-points its restored trials to where the experiment now is
    (`TuneController._restore_trials`), but `SearchGenerator.set_state` puts back the pickled `Experiment`
    from which every *new* trial takes its storage: where the sweep was first run. So the final re-runs of a
    copied or moved sweep wrote their checkpoints into the directory it was copied from. All trials of one
    experiment share its storage, and the first trial is a restored one (re-pointed) whenever any were
    restored, so copying the first trial's storage is right both for a fresh and for a restored Tuner.
    """
    if tune_controller is None or trial.storage is None:  # Ray's own schedulers are driven so in tests
        return
    first = next(iter(tune_controller.get_trials()), None)
    if first is None or first is trial or first.storage is None:
        return
    here, there = trial.storage, first.storage
    if (here.storage_fs_path, here.experiment_dir_name) == (there.storage_fs_path, there.experiment_dir_name):
        return
    storage = copy.copy(here)
    storage.storage_filesystem = there.storage_filesystem
    storage.storage_fs_path = there.storage_fs_path
    storage.experiment_dir_name = there.experiment_dir_name
    trial.set_storage(storage)


def place_asha_rungs(
    scheduler: Any, grace_period: int, completed: dict[str, list[tuple[int, float]]]
) -> None:
    """Ray 2.60: move an ASHAScheduler's rungs to grace_period * reduction_factor^k, keeping its other settings.

    ASHA fixes its rungs when it is built (`_brackets`, a list of `_Bracket`, each holding `_rungs` =
    [(milestone, {trial id: signed metric})], and `_trial_info` mapping a running trial to its bracket). The new
    brackets replace the old ones position for position, so running trials keep their bracket; each completed
    trial's curve ([(epoch, signed metric)]) is recorded at every new rung it reached, with its value at the first
    epoch at or past the rung, as ASHA records a trial that passes a rung (in every bracket: brackets differ only
    in where their rungs are).
    """
    from ray.tune.schedulers.async_hyperband import _Bracket

    brackets = [
        _Bracket(grace_period, scheduler._max_t, scheduler._reduction_factor, s,
                 stop_last_trials=scheduler._stop_last_trials)
        for s in range(len(scheduler._brackets))
    ]
    index = {id(b): i for i, b in enumerate(scheduler._brackets)}
    scheduler._trial_info = {tid: brackets[index[id(b)]] for tid, b in scheduler._trial_info.items()}
    for bracket in brackets:
        for milestone, recorded in bracket._rungs:
            for trial_id, curve in completed.items():
                reached = [value for epoch, value in curve if epoch >= milestone]
                if reached:
                    recorded[trial_id] = reached[0]
    scheduler._brackets = brackets


def optuna_study(search: Any) -> Any:
    """The `optuna.Study` behind a Ray Tune `OptunaSearch`: every trial its sampler has seen, through Optuna's API.

    Ray 2.60 keeps it in the private `_ot_study` and offers no accessor; a study's trial states and intermediate
    values are read through this function only.
    """
    return search._ot_study


def trial_storage_dir() -> tuple[Any, str]:
    """(pyarrow filesystem, path) of the running trial's directory on the sweep's storage (call inside a trial).

    Ray 2.60: `tune.get_context().get_storage()` (a DeveloperAPI) is the trial's `StorageContext`; its
    `storage_filesystem` and `trial_fs_path` name the directory that holds result.json, local or a URI. The
    public `get_trial_dir()` is the worker's working directory instead, which reaches the storage only with
    `SyncConfig(sync_artifacts=True)`.
    """
    from ray import tune

    context = tune.get_context().get_storage()
    return context.storage_filesystem, context.trial_fs_path


def _keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def fit_noting_interrupts(tuner: tune.Tuner) -> tuple[tune.ResultGrid, bool]:
    """`tuner.fit()`, and whether Ctrl+C / SIGUSR1 stopped it.

    Ray 2.60: Tune marks every trial TERMINATED when interrupted, so the results alone cannot tell. Its
    handler, on a signal, puts back the SIGINT handler it found; finding ours back in place after
    fit() means Tune was interrupted (ours behaves as Python's default if ever called directly).
    """
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit(), False
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, _keyboard_interrupt)
    try:
        grid = tuner.fit()
    finally:
        interrupted = signal.getsignal(signal.SIGINT) is _keyboard_interrupt
        signal.signal(signal.SIGINT, previous)
    return grid, interrupted


def init_on_loopback(**kwargs: object) -> None:
    """ray.init on 127.0.0.1 only.

    Ray 2.60: `ray.init(_node_ip_address="127.0.0.1")` is not enough: Ray replaces a loopback node IP by the
    machine's address, and its C++ servers then bind every interface. Ray's local-only mode keeps the
    node IP at 127.0.0.1; its flag is read when `ray` is imported, so it is set, for this call, in the
    driver and in the environment the processes Ray starts inherit (workers inherit the raylet's).
    """
    import ray
    from ray._private import ray_constants

    saved_env = os.environ.get(RAY_LOCAL_ONLY_ENV)
    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[RAY_LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(_node_ip_address="127.0.0.1", dashboard_host="127.0.0.1", **kwargs)
    finally:  # the processes Ray started keep the flag; later ones in this driver need not
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(RAY_LOCAL_ONLY_ENV, None)
        else:
            os.environ[RAY_LOCAL_ONLY_ENV] = saved_env


def reported_cluster_config() -> Any:
    """The node groups the cluster's platform reported to Ray's GCS, or None (needs a connected Ray).

    Ray 2.60: `ray._private.state.state.get_cluster_config()`, the call Ray Data's own autoscaling reads; it
    returns a `ClusterConfig` whose `node_group_configs` have `name`, `resources` and `max_count` (-1: no limit).
    """
    from ray._private.state import state

    return state.get_cluster_config()


def job_actors(driver_pid: int) -> list[tuple[int, str]]:
    """(process id, state) of every actor of the Ray jobs whose driver ran as process `driver_pid` (needs a
    connected Ray); the state is Ray's: "ALIVE", "RESTARTING", "DEAD", ...

    Lets a caller wait until a stopped driver's trial actors are gone: Ray kills a job's actors after its driver
    exits, and until then they may still write. Ray 2.60: `ray._private.state.jobs()` ("JobID", "DriverPid") and
    `actors()` ("JobID", "State", "Pid") read the GCS's tables; the public `ray.util.state` asks the dashboard,
    which a Ray started without one (`include_dashboard=False`) does not run.
    """
    from ray._private import state

    jobs = {job["JobID"] for job in state.jobs() if job["DriverPid"] == driver_pid}
    return [(actor["Pid"], actor["State"]) for actor in state.actors().values() if actor["JobID"] in jobs]


def quiet_tune_console() -> None:
    """Ray 2.60's console settings for a sweep that prints its own one line per trial (unless set already).

    `RAY_AIR_NEW_OUTPUT=0`: the new console output prints a configuration box and two path lines per Tuner
    even at verbose=0. `TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S=0`: with
    `checkpoint_every: 1` and sub-second epochs, Tune warns on every forced sync of its experiment state
    (harmless on local storage), once per epoch per trial, drowning the sweep's log.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


#: Ray 2.60's loggers that report a failed upload of the experiment directory (trial results, state) to storage.
_SYNC_LOGGERS = ("ray.tune.execution.experiment_state", "ray.train._internal.syncer")
_ERRNO = re.compile(r"\[Errno (\d+)\]|\[errno (\d+)\]")


class _SyncFailures(logging.Handler):
    """Collects the OSErrors of Ray's failed uploads to storage (see `watch_storage_writes`)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failures: list[OSError] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError):
            self.failures.append(exc)
            return
        message = record.getMessage()
        found = _ERRNO.search(message) if "sync" in message.lower() and "failed" in message.lower() else None
        if found:
            code = int(found.group(1) or found.group(2))
            self.failures.append(OSError(code, os.strerror(code)))


_WATCH = _SyncFailures()


def watch_storage_writes() -> list[OSError]:
    """A list that fills with every failed upload of the sweep's experiment directory from now on.

    Ray 2.60 writes each trial's result.json, progress.csv and params.json, and its own state, into the driver's
    staging directory and copies that directory to storage in a background thread (`_BackgroundSyncer`); a failed
    copy (a full disk: ENOSPC, EIO, a read-only mount) is only logged: `experiment_state` logs an error with the
    exception when it waits for the copy, the syncer a warning with its traceback as text when it launches the
    next one. Meanwhile the copy has truncated the files it rewrote. This hears both, so the sweep can stop.
    """
    for name in _SYNC_LOGGERS:
        logger = logging.getLogger(name)
        if _WATCH not in logger.handlers:
            logger.addHandler(_WATCH)
    _WATCH.failures = []
    return _WATCH.failures


def run_again_from_start(tune_controller: Any, trial: Trial) -> None:
    """Make a finished trial that Ray restored run again from its start, under its own id (call after Ray added it,
    before its first step: `tuning.studies.StudyScheduler.recover`).

    Ray 2.60 has no resume mode for that (`ResumeConfig.RESTART` gives a new trial id, which the searcher does not
    know): the trial's run metadata (last result, checkpoints) is replaced by a fresh one and it is set PENDING
    through the controller's `_set_trial_status` (whitelisted for schedulers), which moves it from the stopped
    trials to the pending ones it starts; since `TuneController.add_trial` decided that a TERMINATED trial is not
    live, it is put among the live trials too (`get_live_trials` returns the controller's set), so the controller
    is not finished while it runs.
    """
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.tune.experiment import Trial
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    checkpoint_config = trial.run_metadata.checkpoint_manager.checkpoint_config
    trial.run_metadata = _TrainingRunMetadata()
    trial.run_metadata.checkpoint_manager = _CheckpointManager(checkpoint_config=checkpoint_config)
    trial.restore_path = None
    trial._restore_checkpoint_result = None
    tune_controller._set_trial_status(trial, Trial.PENDING)
    tune_controller.get_live_trials().add(trial)
