"""Resume: a sweep interrupted by Ctrl+C in another process continues with `--resume`, restoring the
interrupted study's Tuner (its finished trials kept, not re-run) and finishing the study.
(Skipping whole finished studies on resume is covered in test_tuning.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TINY_SWEEP
from proselflc.tuning import load_sweep, run_sweep
from sweep_files import trial_results

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _wait_for(condition, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out; sweep output:\n{log.read_text()}")
        time.sleep(0.1)


def _full_length(search: Path) -> dict[Path, bytes]:
    """result.json contents of the trials that have reported their last (3rd) epoch."""
    out = {}
    for path in search.glob("*/result.json"):
        lines = path.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("epoch") == 3:
            out[path] = path.read_bytes()
    return out


SAMPLES = 8


def test_interrupted_sweep_resumes_where_it_stopped(ray_session: Any, tmp_path: Path) -> None:
    raw = {
        **TINY_SWEEP,
        "name": "resume",
        "storage_path": str(tmp_path / "results"),
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"proselflc": TINY_SWEEP["methods"]["proselflc"]},
        "num_samples": SAMPLES,  # enough that the interrupt lands mid-study, after the first full-length trial
        "final_seeds": 0,
        "checkpoint_every": 1,
    }
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    sweep_dir = tmp_path / "results" / "resume"
    manifest = sweep_dir / "manifest.json"
    search = sweep_dir / "symmetric-0.4" / "proselflc" / "search"

    # The sweep runs in its own driver process, connected to this session's Ray like a cluster job.
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "proselflc.cli", "tune", str(sweep_file)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: bool(_full_length(search)), 240, proc, log)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "--resume" in log.read_text()

    (entry,) = json.loads(manifest.read_text())["studies"]
    assert entry["status"] == "pending"
    done_before = _full_length(search)
    started = {p.parent.name for p in search.glob("*/params.json")}
    assert started

    lines: list[str] = []
    run_sweep(load_sweep(sweep_file), resume=True, log=lines.append)

    assert any("restoring the interrupted Tuner" in line for line in lines)
    assert {p: p.read_bytes() for p in done_before} == done_before  # finished trials were not re-run
    after = trial_results(search)
    assert len(after) == SAMPLES  # the interrupted search was continued, not replaced by new trials
    assert started <= {p.parent.name for p in search.glob("*/params.json")}
    assert max(rows[-1]["epoch"] for _, rows in after) == 3
    (entry,) = json.loads(manifest.read_text())["studies"]
    assert entry["status"] == "finished" and entry["best_params"] in [p for p, _ in after]
