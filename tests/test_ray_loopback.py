"""A local Ray started by proselflc listens on loopback only, and its processes end with the driver.

The driver runs in a subprocess (this test session already has its own Ray in-process): it starts
Ray through `preflight.connect()`, runs tasks so workers exist, and reports the listening sockets of
every process it started.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import psutil
import pytest

from proselflc.config import ConfigError
from proselflc.tuning import preflight

DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    import psutil, ray
    from proselflc.tuning.preflight import connect

    assert connect(log_to_driver=False)

    @ray.remote
    def pid():
        return os.getpid()

    ray.get([pid.remote() for _ in range(2)])

    def listening_sockets(procs):
        found = []
        for proc in [psutil.Process(), *procs]:
            try:
                found += [[proc.name(), c.laddr.ip, c.laddr.port] for c in proc.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:
                pass
        return found

    # The node's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) bind their ports as they start: wait for them.
    deadline = time.monotonic() + 30
    while True:
        procs = psutil.Process().children(recursive=True)
        listening = listening_sockets(procs)
        agents = {p.name() for p in procs if p.name().endswith("Agent")}
        if (agents and agents <= {name for name, _, _ in listening}) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(json.dumps({"pids": [p.pid for p in procs], "listening": listening}), flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)
    ray.shutdown()
    """
)


def start_driver(mode: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(extra_env or {})
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        pytest.fail(f"driver failed: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def wait_gone(pids: list[int], within_s: float) -> list[str]:
    """The processes of `pids` still alive after `within_s` seconds (empty when all ended); looks at least once."""
    deadline = time.monotonic() + within_s
    while True:
        alive = [p for p in map(_process, pids) if p is not None]
        if not alive:
            return []
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    names = [f"{p.pid} {p.name()}" for p in alive]
    for proc in alive:  # the test started them: do not leave them behind
        proc.kill()
    return names


def _process(pid: int) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.NoSuchProcess:
        return None


@pytest.mark.subprocess
def test_a_local_ray_listens_on_loopback_only_and_ends_with_the_driver(tmp_path):
    """Also: the auth token the local Ray generates (its own HOME here, so Ray creates one) is mode 0600."""
    proc, seen = start_driver("exit", {"HOME": str(tmp_path)})
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    token = tmp_path / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600, oct(token.stat().st_mode)
    names = {name for name, _, _ in seen["listening"]}
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, seen["listening"]
    exposed = [row for row in seen["listening"] if not is_loopback(row[1])]
    assert exposed == [], f"listening outside 127.0.0.0/8: {exposed}"
    assert wait_gone(seen["pids"], within_s=30) == []


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.last
def test_a_sigkilled_drivers_ray_processes_end_within_a_bound(sigkilled_local_ray: tuple[list[int], float]):
    """Ray's agents wait out a 60 s report to the dead GCS before they exit; nothing survives 90 s after the kill.

    The driver was killed when the session started (conftest's `sigkilled_local_ray`); this runs last."""
    pids, killed_at = sigkilled_local_ray
    assert pids, "the driver reported no Ray processes"
    assert wait_gone(pids, within_s=90 - (time.monotonic() - killed_at)) == []


def test_the_user_can_ask_for_rays_default_binding(monkeypatch):
    monkeypatch.setenv(preflight.LOOPBACK_ENV, "0")
    assert preflight.loopback_wanted() is False
    monkeypatch.setenv(preflight.LOOPBACK_ENV, "maybe")
    with pytest.raises(ConfigError, match="PROSELFLC_RAY_LOOPBACK='maybe'"):
        preflight.loopback_wanted()
    monkeypatch.delenv(preflight.LOOPBACK_ENV)
    assert preflight.loopback_wanted() is True
