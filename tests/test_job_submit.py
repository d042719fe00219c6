"""Cluster job submission: `ray job submit ... -- proselflc tune sweep.yaml` against a real local head.

The head runs with its own HOME and temp dir (so ~/.ray state such as an auth token left by earlier
runs cannot change its behaviour) and is stopped by signalling the process group this test started:
`ray stop` would also stop every other Ray instance on the machine, including the test session's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import TINY_SWEEP

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, head: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"ray start exited with {head.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the dashboard at {url} did not come up:\n{log.read_text()}")


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group of `ray start --block` (the head and all it spawned)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # Children outlive the `ray start` process for a moment; make sure none is left in the group.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def test_job_submit_runs_a_sweep_on_a_local_head(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    storage = tmp_path / "results"
    workdir = tmp_path / "job"
    workdir.mkdir()
    sweep = {
        **TINY_SWEEP,
        "name": "job",
        "noise": {"kind": "symmetric", "rates": [0.2]},
        "methods": {"labelsmoothing": {"search": {"loss.epsilon": {"type": "uniform", "low": 0.05, "high": 0.5}}}},
        "num_samples": 2,
        "final_seeds": 0,
        "storage_path": str(storage),
    }
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(sweep))

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    # Every port explicit: Ray's fixed defaults (agent 52365, client 10001) may be held by other Ray instances.
    port, dashboard, agent, client = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "head.log"
    with log.open("w") as out:
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
             "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
             "--dashboard-agent-listen-port", str(agent), "--ray-client-server-port", str(client),
             "--num-cpus", "2", "--num-gpus", "0", "--temp-dir", str(ray_tmp), "--disable-usage-stats"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        wait_http(f"{address}/api/version", 120, head, log)
        command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(workdir),
                   "--", "proselflc", "tune", "sweep.yaml"]
        deadline = time.monotonic() + 60
        while True:
            submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
            output = submit.stdout + submit.stderr
            # The dashboard answers before the node's job agent registers: retry that one error briefly.
            if "No available agent" not in output or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert submit.returncode == 0, output
        assert "succeeded" in output.lower() and "symmetric-0.2/labelsmoothing" in output

        from ray.job_submission import JobStatus, JobSubmissionClient

        jobs = JobSubmissionClient(address).list_jobs()
        assert [j.status for j in jobs if j.entrypoint == "proselflc tune sweep.yaml"] == [JobStatus.SUCCEEDED]
    finally:
        stop_head(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    manifest = json.loads((storage / "job" / "manifest.json").read_text())
    assert [(s["study"], s["status"]) for s in manifest["studies"]] == [("symmetric-0.2/labelsmoothing", "finished")]
    assert len(list((storage / "job" / "trials").glob("symmetric-0.2_labelsmoothing_search_*/result.json"))) == 2
