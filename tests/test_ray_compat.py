"""The shims in `proselflc.ray_compat`, checked against the installed Ray with Ray's own objects.

Each shim leans on Ray behaviour that Ray's public API does not promise; when Ray is upgraded, these tests say
which assumption moved. The end-to-end behaviour they enable is tested where it matters: a copied sweep's
resume (tests/test_tuning_resume.py), Ctrl+C (same), a loopback-only local Ray (tests/test_ray_loopback.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray.train._internal.storage import StorageContext
from ray.tune import result as ray_result
from ray.tune.experiment import Trial

from proselflc import ray_compat


def _trial(storage_path: Path, name: str) -> Trial:
    storage = StorageContext(storage_path=str(storage_path), experiment_dir_name="trials", trial_dir_name=name)
    return Trial("train", config={}, trial_id=name, storage=storage, stub=True)


class _Controller:
    """What Ray 2.60 hands a scheduler's `on_trial_add`: its trials, in the order they were added."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials

    def get_trials(self) -> list[Trial]:
        return self.trials


def test_a_new_trial_takes_the_storage_of_the_experiment_first_trial(tmp_path: Path) -> None:
    restored = _trial(tmp_path / "copy", "restored")  # Ray re-pointed it to where the sweep is now
    stale = _trial(tmp_path / "original", "new")  # made from the restored searcher's pickled Experiment
    ray_compat.follow_experiment_storage(_Controller([restored, stale]), stale)
    assert stale.storage.storage_fs_path == restored.storage.storage_fs_path
    assert stale.storage.trial_fs_path == str(tmp_path / "copy" / "trials" / "new")
    assert Path(stale.path) == tmp_path / "copy" / "trials" / "new"


def test_trials_of_a_fresh_experiment_are_left_as_ray_made_them(tmp_path: Path) -> None:
    first, second = _trial(tmp_path / "here", "a"), _trial(tmp_path / "here", "b")
    before = second.storage
    ray_compat.follow_experiment_storage(_Controller([first]), first)
    ray_compat.follow_experiment_storage(_Controller([first, second]), second)
    assert second.storage is before


def test_the_bookkeeping_keys_cover_what_ray_tune_adds_to_a_result() -> None:
    # time_total_s is kept on purpose: the analysis reports search cost from it.
    added = set(ray_result.AUTO_RESULT_KEYS) | {ray_result.DONE, ray_result.SHOULD_CHECKPOINT, ray_result.TRIAL_ID}
    assert added - {ray_result.TIME_TOTAL_S} <= ray_compat.RESULT_BOOKKEEPING_KEYS
    assert ray_result.TIME_TOTAL_S not in ray_compat.RESULT_BOOKKEEPING_KEYS


@pytest.mark.ray
def test_the_cluster_config_call_answers_on_a_local_ray(ray_session: object) -> None:
    config = ray_compat.reported_cluster_config()  # a local Ray has no platform-reported node groups
    assert config is None or hasattr(config, "node_group_configs")


def test_the_optuna_study_behind_ray_tunes_optuna_search_is_the_one_it_asks_and_tells() -> None:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    space = {"lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)}
    search = OptunaSearch(space=space, metric="m", mode="max", sampler=optuna.samplers.RandomSampler(seed=0))
    suggested = search.suggest("t1")
    search.on_trial_complete("t1", {"m": 0.5})
    (trial,) = ray_compat.optuna_study(search).trials
    assert trial.params == suggested and trial.value == 0.5 and trial.state == optuna.trial.TrialState.COMPLETE


@pytest.mark.subprocess
def test_the_analysis_reads_the_bookkeeping_keys_without_importing_ray() -> None:
    import subprocess
    import sys

    code = "import sys, proselflc.analysis.load; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


#: A driver (its own Ray job) that starts one actor, prints the actor's pid, and exits when stdin closes.
_ONE_ACTOR_DRIVER = """
import os, sys, ray
ray.init(logging_level="ERROR")

@ray.remote(num_cpus=0)
class Actor:
    def pid(self):
        return os.getpid()

actor = Actor.remote()
print(ray.get(actor.pid.remote()), flush=True)
sys.stdin.readline()
"""


@pytest.mark.ray
def test_a_driver_s_actors_are_listed_alive_then_dead_once_it_exits(ray_session: Any) -> None:
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    driver = subprocess.Popen([sys.executable, "-c", _ONE_ACTOR_DRIVER], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        actor_pid = int(driver.stdout.readline())
        assert ray_compat.job_actors(driver.pid) == [(actor_pid, "ALIVE")]
        driver.stdin.close()
        assert driver.wait(timeout=60) == 0
        deadline = time.monotonic() + 60
        while ray_compat.job_actors(driver.pid) != [(actor_pid, "DEAD")]:
            assert time.monotonic() < deadline, ray_compat.job_actors(driver.pid)
            time.sleep(0.1)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert ray_compat.job_actors(os.getpid() + 10**7) == []  # no job had that driver


def test_asha_rungs_move_and_completed_trials_are_recorded_at_the_new_rungs() -> None:
    from ray.tune.schedulers import ASHAScheduler

    from proselflc.ray_compat import place_asha_rungs

    asha = ASHAScheduler(time_attr="epoch", metric="m", mode="max", max_t=24, grace_period=24, reduction_factor=2)
    place_asha_rungs(asha, 6, {"done": [(e, float(e)) for e in range(1, 25)], "short": [(1, 0.5), (7, 0.7)]})
    rungs = {milestone: dict(recorded) for milestone, recorded in asha._brackets[0]._rungs}
    assert sorted(rungs) == [6, 12, 24]
    assert rungs[6] == {"done": 6.0, "short": 0.7} and rungs[12] == {"done": 12.0} and rungs[24] == {"done": 24.0}


@pytest.mark.ray
def test_a_failed_upload_of_the_experiment_directory_is_heard(ray_session: Any, tmp_path: Path) -> None:
    """Ray's own experiment-state upload into a storage path where a file blocks the experiment directory fails;
    Ray only logs it, and `watch_storage_writes` collects the OSError."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    storage = StorageContext(storage_path=str(tmp_path / "store"), experiment_dir_name="trials")
    manager = _ExperimentCheckpointManager(storage=storage, checkpoint_period=0)

    def save() -> None:
        Path(storage.experiment_driver_staging_path).mkdir(parents=True, exist_ok=True)
        Path(storage.experiment_driver_staging_path, "experiment_state.json").write_text("{}")

    failures = ray_compat.watch_storage_writes()
    manager.sync_up_experiment_state(save, force=True, wait=True)
    assert failures == []  # a working storage: nothing heard
    blocked = Path(storage.experiment_fs_path)
    for child in blocked.iterdir():
        child.unlink()
    blocked.rmdir()
    blocked.write_text("in the way")  # the upload cannot create the experiment directory
    manager.sync_up_experiment_state(save, force=True, wait=True)
    assert failures and all(isinstance(failure, OSError) for failure in failures), failures
    assert ray_compat.watch_storage_writes() == []  # each sweep hears its own failures


def restored_controller(storage_path: Path, trials: list[Trial], scheduler: Any = None) -> Any:
    """Ray's own controller, holding `trials` as `TuneController.resume` leaves them: added with their status."""
    from ray.tune.execution.tune_controller import TuneController

    controller = TuneController(
        scheduler=scheduler, storage=StorageContext(storage_path=str(storage_path), experiment_dir_name="trials")
    )
    for trial in trials:
        controller.add_trial(trial)
    return controller


@pytest.mark.ray
def test_a_restored_finished_trial_is_made_to_run_again_from_its_start_under_its_id(
    ray_session: Any, tmp_path: Path
) -> None:
    trial = _trial(tmp_path, "lost")
    trial.set_status(Trial.TERMINATED)
    trial.run_metadata.last_result = {"training_iteration": 3}
    controller = restored_controller(tmp_path, [trial])
    assert trial not in controller.get_live_trials()  # Ray decided so when it added the trial
    ray_compat.run_again_from_start(controller._wrapped(), trial)  # as a scheduler is handed the controller
    assert trial.status == Trial.PENDING and trial.trial_id == "lost"
    assert trial.checkpoint is None and not trial.run_metadata.last_result
    assert trial in controller.get_live_trials() and trial in controller._pending_trials  # the controller starts it


def test_a_trials_storage_context_names_the_directory_that_holds_its_results(tmp_path: Path) -> None:
    """`trial_storage_dir` reads `tune.get_context().get_storage()`: the trial's StorageContext, whose filesystem and
    `trial_fs_path` are where result.json goes (end to end: tests/test_selection_certainty.py's sweep)."""
    from ray import tune

    assert callable(getattr(tune.get_context(), "get_storage", None))
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="trials", trial_dir_name="t1")
    assert storage.storage_filesystem.type_name == "local"
    assert Path(storage.trial_fs_path) == tmp_path / "trials" / "t1"
