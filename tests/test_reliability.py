"""Faults a sweep meets on a real cluster: killed workers and drivers, untrusted and torn files.

These run real Ray (the session's shared instance), real Optuna and real processes killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from proselflc.config import build_run_config
from proselflc.io import atomic_write_text
from proselflc.training import Engine
from proselflc.tuning import build_sweep_config, run_sweep
from proselflc.tuning.state_guard import last_snapshot
from sweep_files import final_trial_dirs, results, study_trial_dirs, trial_dirs

pytestmark = [pytest.mark.faults, pytest.mark.ray]

BASE: dict[str, Any] = {
    "data": {"name": "digits", "limit": 500},
    "model": {"name": "mlp", "hidden": 16},
    "optim": {"lr": 0.1, "schedule": "constant"},
    "train": {"epochs": 5, "batch_size": 64, "seed": 0},
}


def sweep_dict(storage: Path, name: str, **changes: Any) -> dict[str, Any]:
    raw = {
        "name": name,
        "base": BASE,
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"crossentropy": {"search": {}}},
        "num_samples": 1,
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent_trials": 1,
        "storage_path": str(storage),
        "final_seeds": 0,
        "checkpoint_every": 1,
        "max_failures": 1,
    }
    raw.update(changes)
    return raw


def strip(row: dict[str, Any]) -> dict[str, Any]:
    from proselflc.training import METRIC_KEYS

    return {k: row[k] for k in METRIC_KEYS if k != "samples_per_s"}


#: The epoch after which the first attempt of the killed trial waits to be killed.
KILL_AFTER = 2


def _waits_to_be_killed_after(epoch: int, marker: Path) -> Any:
    """The platform's `train_engine`, except that a first attempt (nothing to restore), once its row for `epoch`
    is reported with its checkpoint, writes its process id to `marker` and waits to be killed. Nested, so Ray
    pickles it by value for the workers."""

    def run(params: dict[str, Any], **kwargs: Any) -> None:
        from ray import tune

        from proselflc.trainables import train_engine

        if tune.get_checkpoint() is not None:  # the retry: train to the end
            train_engine(params, **kwargs)
            return
        report = tune.report

        def report_then_wait(metrics: dict[str, Any], **options: Any) -> None:
            report(metrics, **options)
            if metrics["epoch"] == epoch:
                marker.write_text(str(os.getpid()))
                threading.Event().wait(120)  # SIGKILLed here; were it not, the test fails on `killed`

        tune.report = report_then_wait
        try:
            train_engine(params, **kwargs)
        finally:
            tune.report = report

    return run


def test_a_killed_trial_worker_is_retried_from_its_checkpoint_and_ends_identical(ray_session, tmp_path):
    sweep = build_sweep_config(sweep_dict(tmp_path, "worker-kill"))
    experiment = sweep.sweep_dir / "trials"
    marker = tmp_path / "kill-me"
    killed: list[int] = []

    def killer() -> None:
        """SIGKILL the trial's worker once it waits to be killed and the driver has logged its checkpointed row."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            dirs = trial_dirs(experiment) if experiment.exists() else []
            if marker.exists() and dirs and any(r["epoch"] == KILL_AFTER for r in results(dirs[0])):
                pid = int(marker.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    run_sweep(sweep, trial_function=_waits_to_be_killed_after(KILL_AFTER, marker))
    thread.join(timeout=5)
    assert killed, "the trial never reached the epoch it is killed after"

    (trial,) = trial_dirs(experiment)
    rows = results(trial)
    epochs = [r["epoch"] for r in rows]
    last = BASE["train"]["epochs"]
    assert epochs[-1] == last
    assert epochs.count(1) == 1, f"the retried trial started over instead of restoring: {epochs}"
    assert sorted(set(epochs)) == list(range(1, last + 1)), f"per-epoch rows were lost: {epochs}"
    from proselflc import analysis

    rows_read = analysis.load_sweep(sweep.sweep_dir)
    assert list(rows_read["epoch"]) == list(range(1, last + 1)), "the analysis must see every epoch once"
    assert rows[-1]["iterations_since_restore"] < rows[-1]["training_iteration"], "no restore was recorded"

    run_cfg = sweep.study_config(0.4, sweep.methods[0])
    run_cfg["train"]["threads"] = 1  # the trial reserved one CPU, so torch ran it on one thread
    threads = torch.get_num_threads()
    try:
        uninterrupted = Engine(build_run_config(run_cfg)).run()
    finally:
        torch.set_num_threads(threads)
    assert strip(rows[-1]) == strip(uninterrupted[-1])


def saved_trial_statuses(experiment: Path) -> dict[str, str]:
    """Trial id -> status in the last experiment state saved in `experiment` (Ray's, or a signed snapshot)."""
    saved = sorted(experiment.glob("experiment_state-*.json"))
    if not saved:
        return {}
    try:
        data = json.loads(saved[-1].read_text())
    except json.JSONDecodeError:  # being rewritten right now
        return {}
    trials = (json.loads(trial) for trial, _runtime in data["trial_data"])
    return {t["trial_id"]: t["status"] for t in trials}


def test_a_killed_driver_is_finished_by_resume_without_duplicates(ray_session, tmp_path):
    """Two studies side by side (two trials at once), the driver SIGKILLed while trials of both train and once
    the Tuner's saved state has a finished trial: --resume restores the one Tuner and every study ends with
    exactly its trials; none that the saved state had as finished is re-run."""
    studies = ("symmetric-0.4/crossentropy", "symmetric-0.4/labelsmoothing")
    raw = sweep_dict(
        tmp_path,
        "driver-kill",
        methods={
            "crossentropy": {"search": {"optim.lr": {"type": "loguniform", "low": 0.02, "high": 0.3}}},
            "labelsmoothing": {"search": {"loss.epsilon": {"type": "uniform", "low": 0.0, "high": 0.4}}},
        },
        num_samples=3,
        final_seeds=1,
        checkpoint_every=1,
        max_concurrent_trials=2,
        per_study_concurrency=1,  # so the second slot goes to the other study
    )
    raw["base"] = {**BASE, "train": {**BASE["train"], "epochs": 4}}
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    sweep_dir = tmp_path / "driver-kill"
    experiment = sweep_dir / "trials"
    # Ray saves the Tuner's state at most every 10 s by default: every second here, so that a finished trial
    # is in the saved state well before the sweep ends (which trials count as finished is read from it).
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    cli = [sys.executable, "-m", "proselflc.cli", "tune", str(sweep_file)]
    driver = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def reported(study: str) -> bool:
        return any(results(d) for d in study_trial_dirs(sweep_dir, study)) if experiment.exists() else False

    def saved_finished() -> set[str]:
        """Trials finished in the state the resume restores: the last signed snapshot. Ray's own newer save, if
        the kill came before the monitor signed it, is set aside by the resume (a trial that finished only there
        is continued or dealt again, its directory kept in .orphaned/)."""
        snapshot = last_snapshot(sweep_dir)
        try:
            statuses = saved_trial_statuses(snapshot.local) if snapshot is not None else {}
        except OSError:  # the generation was replaced by a newer one while it was read
            return set()
        return {trial_id for trial_id, status in statuses.items() if status == "TERMINATED"}

    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None and not (
            all(map(reported, studies)) and saved_finished()
        ):
            time.sleep(0.1)
        assert driver.poll() is None, f"the driver ended before it could be killed:\n{driver.stdout.read()}"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert not all(s["status"] == "finished" for s in manifest["studies"])
    finished = saved_finished()
    before = {d.name: results(d) for study in studies for d in study_trial_dirs(sweep_dir, study)
              if d.name.rsplit("_", 1)[1] in finished}
    assert before and all(before.values()), before  # finished: trained to the end or stopped by ASHA

    resumed = subprocess.run([*cli, "--resume"], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "restoring the interrupted sweep's Tuner" in resumed.stdout

    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert all(s["status"] == "finished" for s in manifest["studies"])
    for entry in manifest["studies"]:
        search = study_trial_dirs(sweep_dir, entry["study"])
        assert sorted(d.name for d in search) == sorted(entry["trial_order"])
        assert len(search) == 3, f"{entry['study']}: {[p.name for p in search]}"
        params = [json.loads((p / "params.json").read_text()) for p in search]
        assert len({json.dumps(p, sort_keys=True) for p in params}) == 3, "a trial was duplicated"
        assert len(final_trial_dirs(sweep_dir, entry["study"])) == 1
    for name, rows in before.items():
        assert results(sweep_dir / "trials" / name) == rows, f"{name} had finished but was run again:\n{resumed.stdout}"

    from proselflc import analysis

    df = analysis.load_sweep(sweep_dir)
    counts = df.drop_duplicates(["study", "phase", "trial_id"]).groupby(["study", "phase"]).size().to_dict()
    assert counts == {(s, "search"): 3 for s in studies} | {(s, "final"): 1 for s in studies}


def test_atomic_write_keeps_the_old_file_when_the_writer_crashes(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_text(target, '{"complete": true}')

    from proselflc.io import atomic_write

    def crash(fh) -> None:
        fh.write(b'{"trunc')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert json.loads(target.read_text()) == {"complete": True}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"], "no temp file is left behind"


def test_yaml_is_loaded_safely(tmp_path):
    from proselflc.config import ConfigError, load_run_config

    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(evil)
