"""Where proselflc leans on Ray behaviour that its public API does not promise: all of it, in one place.

Each shim names the Ray version it was checked against (`CHECKED_RAY`). When Ray is upgraded, this module is
what to re-read: `tests/test_ray_compat.py` checks every shim against the installed Ray. Ray is imported inside
the functions, so the analysis can read `RESULT_BOOKKEEPING_KEYS` without starting Ray's import.
"""

from __future__ import annotations

import copy
import os
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
_RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


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

    saved_env = os.environ.get(_RAY_LOCAL_ONLY_ENV)
    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(_node_ip_address="127.0.0.1", dashboard_host="127.0.0.1", **kwargs)
    finally:  # the processes Ray started keep the flag; later ones in this driver need not
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(_RAY_LOCAL_ONLY_ENV, None)
        else:
            os.environ[_RAY_LOCAL_ONLY_ENV] = saved_env


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
