"""One driver per sweep directory: a second one is refused naming the first; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proselflc.config import ConfigError
from proselflc.tuning.lock import LOCK_FILE, SweepLock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from proselflc.config import ConfigError
    from proselflc.tuning.lock import SweepLock
    try:
        with SweepLock(sys.argv[1]):
            print("held", flush=True)
            time.sleep(float(sys.argv[2]))
    except ConfigError as err:
        print(f"refused: {err}", flush=True)
        sys.exit(3)
    """
)


def spawn(sweep_dir: Path, hold_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(sweep_dir), str(hold_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


@pytest.mark.faults
def test_a_second_driver_is_refused_naming_the_holder_and_takes_over_after_a_kill(tmp_path):
    sweep = tmp_path / "sweep"
    holder = spawn(sweep, 600)
    try:
        assert first_line(holder) == "held"
        with pytest.raises(ConfigError) as err:
            SweepLock(sweep).acquire()
        message = str(err.value)
        assert f"pid {holder.pid} on host {socket.gethostname()!r}, since 20" in message
        assert str(sweep) in message and "two drivers" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The kernel dropped the dead holder's flock: the next driver takes over and records itself.
    with SweepLock(sweep):
        record = json.loads((sweep / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()


@pytest.mark.subprocess
def test_while_this_process_holds_it_another_process_is_refused_then_admitted(tmp_path):
    with SweepLock(tmp_path):
        other = spawn(tmp_path, 0)
        assert first_line(other).startswith(f"refused: sweep directory {str(tmp_path)!r} is in use")
        assert other.wait(timeout=60) == 3
        assert f"pid {os.getpid()}" in SweepLock(tmp_path)._refuse().args[0]
    after = spawn(tmp_path, 0)
    assert first_line(after) == "held" and after.wait(timeout=60) == 0
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: the record is cleared


@pytest.mark.subprocess
def test_without_flock_the_record_decides_whether_a_lock_is_stale(tmp_path):
    """Where flock is unsupported (some network filesystems) only the file's holder record is left."""
    lock = SweepLock(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cases = {
            "dead process on this host": ({"host": socket.gethostname(), "pid": int(dead.stdout), "since": 0}, True),
            "live process on this host": ({"host": socket.gethostname(), "pid": live.pid, "since": 0}, False),
            "process on another host": ({"host": "elsewhere.invalid", "pid": 1, "since": 0}, False),
            "released (empty) record": ({}, True),
        }
        for name, (record, stale) in cases.items():
            (tmp_path / LOCK_FILE).write_text(json.dumps(record) if record else "")
            assert lock._stale_without_flock() is stale, name
    finally:
        live.kill()
        live.wait()
