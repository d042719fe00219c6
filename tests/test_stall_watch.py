"""The driver says so, with its threads' stacks, when Ray Tune's controller stops stepping (never a silent wait)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proselflc.errors import ConfigError
from proselflc.tuning import stall_watch
from proselflc.tuning.stall_watch import StallWatch


def _a_wait_that_never_ends_here(seconds: float) -> None:
    time.sleep(seconds)


def test_a_tuner_that_never_starts_is_reported_with_the_stacks_of_the_driver(tmp_path: Path) -> None:
    lines: list[str] = []
    with StallWatch(lines.append, stacks_dir=tmp_path, doing="restoring the interrupted sweep's Tuner", quiet=0.4):
        _a_wait_that_never_ends_here(1.5)
    assert lines, "no word from a driver silent for 1.5 s with quiet=0.4"
    assert "Ray Tune has not started the sweep after" in lines[0]
    assert "restoring the interrupted sweep's Tuner" in lines[0]
    assert str(tmp_path / stall_watch.STACKS_FILE) in lines[0]
    stacks = (tmp_path / stall_watch.STACKS_FILE).read_text()
    assert "_a_wait_that_never_ends_here" in stacks  # where the driver waits, for the bug report
    assert len(lines) <= 4  # once per quiet period, not every poll


def test_a_stepping_controller_is_not_reported_and_a_later_silence_is(tmp_path: Path) -> None:
    lines: list[str] = []
    with StallWatch(lines.append, stacks_dir=tmp_path, doing="starting the sweep's Tuner", quiet=0.5):
        for _ in range(30):
            stall_watch.beat()
            time.sleep(0.05)
        assert lines == []
        _a_wait_that_never_ends_here(1.2)
    assert lines and "Ray Tune's controller has not stepped for" in lines[0]


def test_the_quiet_period_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stall_watch.QUIET_ENV, "45")
    assert stall_watch.quiet_s() == 45.0
    for bad in ("0", "-3", "soon"):
        monkeypatch.setenv(stall_watch.QUIET_ENV, bad)
        with pytest.raises(ConfigError, match=f"{stall_watch.QUIET_ENV}='{bad}': expected a number of seconds above 0"):
            stall_watch.quiet_s()
