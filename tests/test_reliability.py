"""Faults a sweep meets on a real cluster: killed workers and drivers, divergence, untrusted and torn files.

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

import psutil
import pytest
import torch
import yaml

from proselflc.config import build_run_config
from proselflc.io import atomic_write_text
from proselflc.training import Engine
from proselflc.tuning import build_sweep_config, run_sweep
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
        "asha": {"grace_period": 1, "reduction_factor": 2},
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent_trials": 1,
        "storage_path": str(storage),
        "final_seeds": 0,
        "checkpoint_every": 1,
        "max_failures": 1,
    }
    raw.update(changes)
    return raw


def trial_processes() -> list[psutil.Process]:
    """Ray worker processes currently running a function trainable (ray::ImplicitFunc...)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        try:
            title = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "ImplicitFunc" in title:
            found.append(proc)
    return found


def strip(row: dict[str, Any]) -> dict[str, Any]:
    from proselflc.training import METRIC_KEYS

    return {k: row[k] for k in METRIC_KEYS if k != "samples_per_s"}


EPOCHS = 30


def test_a_killed_trial_worker_is_retried_from_its_checkpoint_and_ends_identical(ray_session, tmp_path):
    # Long enough (the full digits set, 30 epochs: seconds) that the kill lands while the trial trains.
    slow = {**BASE, "data": {"name": "digits"}, "model": {"name": "mlp", "hidden": 64},
            "train": {**BASE["train"], "epochs": EPOCHS}}
    sweep = build_sweep_config(sweep_dict(tmp_path, "worker-kill", base=slow))
    experiment = sweep.sweep_dir / "trials"
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            dirs = trial_dirs(experiment) if experiment.exists() else []
            if dirs and len(results(dirs[0])) >= 2:
                for proc in trial_processes():
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    run_sweep(sweep)
    thread.join(timeout=5)
    assert killed, "the trial's worker process was never found to kill"

    (trial,) = trial_dirs(experiment)
    rows = results(trial)
    epochs = [r["epoch"] for r in rows]
    assert epochs[-1] == EPOCHS
    assert epochs.count(1) == 1, f"the retried trial started over instead of restoring: {epochs}"
    assert sorted(set(epochs)) == list(range(1, EPOCHS + 1)), f"per-epoch rows were lost: {epochs}"
    from proselflc import analysis

    rows_read = analysis.load_sweep(sweep.sweep_dir)
    assert list(rows_read["epoch"]) == list(range(1, EPOCHS + 1)), "the analysis must see every epoch once"
    assert rows[-1]["iterations_since_restore"] < rows[-1]["training_iteration"], "no restore was recorded"

    run_cfg = sweep.study_config(0.4, sweep.methods[0])
    run_cfg["train"]["threads"] = 1  # the trial reserved one CPU, so torch ran it on one thread
    threads = torch.get_num_threads()
    try:
        uninterrupted = Engine(build_run_config(run_cfg)).run()
    finally:
        torch.set_num_threads(threads)
    assert strip(rows[-1]) == strip(uninterrupted[-1])


def test_a_killed_driver_is_finished_by_resume_without_duplicates(ray_session, tmp_path):
    """Two studies side by side (two trials at once), the driver SIGKILLed while trials of both train:
    --resume restores the one Tuner and every study ends with exactly its trials, none re-run."""
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
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    cli = [sys.executable, "-m", "proselflc.cli", "tune", str(sweep_file)]
    driver = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def reported(study: str) -> bool:
        return any(results(d) for d in study_trial_dirs(sweep_dir, study)) if (sweep_dir / "trials").exists() else False

    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None and not all(map(reported, studies)):
            time.sleep(0.1)
        assert driver.poll() is None, f"the driver ended before it could be killed:\n{driver.stdout.read()}"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert not all(s["status"] == "finished" for s in manifest["studies"])
    before = {d.name: results(d) for study in studies for d in study_trial_dirs(sweep_dir, study)
              if results(d) and results(d)[-1]["epoch"] == 4}

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
        assert results(sweep_dir / "trials" / name) == rows, f"{name} had finished but was run again"

    from proselflc import analysis

    df = analysis.load_sweep(sweep_dir)
    counts = df.drop_duplicates(["study", "phase", "trial_id"]).groupby(["study", "phase"]).size().to_dict()
    assert counts == {(s, "search"): 3 for s in studies} | {(s, "final"): 1 for s in studies}


def test_a_diverging_trial_is_recorded_and_the_sweep_and_analysis_carry_on(ray_session, tmp_path):
    raw = sweep_dict(
        tmp_path,
        "divergence",
        methods={
            "crossentropy": {"search": {}},
            "absurd_lr": {"loss": "crossentropy",
                          "search": {"optim.lr": {"type": "choice", "values": [1.0e6]},
                                     "optim.momentum": {"type": "choice", "values": [0.99]}}},
        },
        num_samples=2,
        final_seeds=1,
        checkpoint_every=0,
    )
    sweep_dir = run_sweep(build_sweep_config(raw))
    bad = study_trial_dirs(sweep_dir, "symmetric-0.4/absurd_lr")
    assert bad and all(results(t)[-1]["diverged"] for t in bad)
    assert all(results(t)[-1]["epoch"] < 5 for t in bad), "a diverged trial is stopped, not trained to the end"
    good = final_trial_dirs(sweep_dir, "symmetric-0.4/crossentropy")
    assert len(good) == 1 and results(good[0])[-1]["epoch"] == 5
    assert not final_trial_dirs(sweep_dir, "symmetric-0.4/absurd_lr"), "no usable trial: nothing to re-run"

    from proselflc import analysis

    df = analysis.load_sweep(sweep_dir)
    statuses = df[df["method"] == "absurd_lr"].groupby("trial_id")["status"].last()
    assert set(statuses) == {"diverged"}
    best = analysis.best_configs(df)
    assert set(best["method"]) >= {"crossentropy"}
    table = analysis.summary(str(sweep_dir))
    assert "crossentropy" in table and "absurd_lr" in table


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
