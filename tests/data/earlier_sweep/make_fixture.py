"""Writes sweep.tar.gz: a sweep directory interrupted (Ctrl+C) under proselflc df2d28b, with the key that signed it.

That proselflc saved Ray's state in the forms `proselflc migrate` now rewrites: the searcher's state as a pickled
`__dict__` (version 1), its signed snapshot as one `.state-backup/` directory, Ray's ConcurrencyLimiter counting
the trials itself, and a monitor without the scheduler; its sweep.yaml holds ASHA's settings under `asha:`.
Run with that commit's code (`PYTHONPATH=<checkout of df2d28b>/src python make_fixture.py`); kept to say how the
fixture was made, not to be run again.
"""

import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).parent
SWEEP = {
    "name": "earlier",
    "base": {
        "data": {"name": "digits", "limit": 600},
        "model": {"name": "mlp", "hidden": 16},
        "optim": {"lr": 0.1, "schedule": "constant"},
        "train": {"epochs": 3, "batch_size": 64, "seed": 0},
    },
    "noise": {"kind": "symmetric", "rates": [0.4]},
    "methods": {
        "crossentropy": {"search": {"optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.5}}},
        "labelsmoothing": {"hyperparameters": {"epsilon": 0.1}},
    },
    "num_samples": 3,
    "asha": {"grace_period": 1, "reduction_factor": 2},
    "searcher": {"seed": 0},
    "resources": {"cpu": 1, "gpu": 0},
    "max_concurrent_trials": 1,
    "final_seeds": 1,
    "checkpoint_every": 1,
    "max_failures": 0,
}


def finished(experiment: Path) -> int:
    """Trials TERMINATED in Ray's saved experiment state."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return 0
    data = json.loads(states[-1].read_text())
    return sum(json.loads(trial)["status"] == "TERMINATED" for trial, _ in data["trial_data"])


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="earlier-"))
    key = work / "sweep-state.key"
    sweep_file = work / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({**SWEEP, "storage_path": str(work)}))
    env = {**os.environ, "PROSELFLC_KEY_FILE": str(key), "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "proselflc.cli", "tune", str(sweep_file)], env=env)
    deadline = time.monotonic() + 300
    while driver.poll() is None and finished(work / "earlier" / "trials") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=120)
    with tarfile.open(HERE / "sweep.tar.gz", "w:gz") as tar:
        tar.add(work / "earlier", arcname="earlier")
        tar.add(key, arcname="sweep-state.key")
    print("stored", HERE / "sweep.tar.gz", "from", work)


if __name__ == "__main__":
    main()
