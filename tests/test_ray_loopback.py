"""A local Ray started by proselflc listens on loopback only, and its processes end with the driver.

The driver runs in a subprocess (this test session already has its own Ray in-process): it starts
Ray through `preflight.connect()`, runs tasks so workers exist, and reports the listening sockets of
every process it started.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import sys
import textwrap
import time
from typing import Any

import psutil
import pytest

from proselflc.config import ConfigError
from proselflc.ray_compat import RAY_LOCAL_ONLY_ENV
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
    # Without the test session's switches: what a user's shell has.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", RAY_LOCAL_ONLY_ENV)}
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


def _listening(proc: psutil.Process) -> list[tuple[str, str]]:
    """(process name, address) of every listening socket of `proc` and its descendants."""
    found = []
    for each in [proc, *proc.children(recursive=True)]:
        try:
            found += [(each.name(), c.laddr.ip) for c in each.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.ray
def test_the_test_sessions_ray_and_the_drivers_tests_start_listen_on_loopback_only(ray_session: Any) -> None:
    """The shared Ray of the suite (tests/conftest.py) and a CLI-style driver connected to it by RAY_ADDRESS: no
    socket outside 127.0.0.0/8, so no test's traffic reaches the machine's other addresses."""
    address = ray_session.get_runtime_context().gcs_address

    @ray_session.remote(num_cpus=0)
    def pid() -> int:
        return os.getpid()

    ray_session.get(pid.remote())  # a worker exists
    assert address.startswith("127.0.0.1:"), address
    session = _listening(psutil.Process())
    assert {"gcs_server", "raylet"} <= {name for name, _ in session}, session
    assert [row for row in session if not is_loopback(row[1])] == []
    code = "import ray, sys; ray.init(logging_level='ERROR'); print('connected', flush=True); sys.stdin.readline()"
    driver = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_ADDRESS": address})
    try:
        assert driver.stdout is not None and driver.stdin is not None
        # A driver that took the machine's address as its node IP waits for that node forever: bound the wait.
        ready, _, _ = select.select([driver.stdout], [], [], 60)
        assert ready, "a driver connecting by RAY_ADDRESS did not connect within 60 s"
        assert driver.stdout.readline().strip() == "connected", driver.stderr.read() if driver.stderr else ""
        own = _listening(psutil.Process(driver.pid))
        assert own and [row for row in own if not is_loopback(row[1])] == [], own
        driver.stdin.close()
        assert driver.wait(timeout=60) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
