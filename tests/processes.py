"""Helpers for the helper processes tests start (a moto server, a headless Chromium)."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> int:
    """Stop `proc` as a service is stopped: SIGTERM, up to `grace_s` to exit, then SIGKILL; its exit status.

    The process is always waited for, so no zombie outlives the fixture that started it.
    """
    proc.terminate()
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
