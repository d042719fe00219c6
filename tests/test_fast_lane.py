"""`make test-fast` selects by marker, so a test that starts the session's Ray must say so: collection refuses one
that uses `ray_session` or `tiny_sweep` (directly or through another fixture) without the `ray` marker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def test_a_test_using_the_sessions_ray_without_the_ray_marker_fails_collection(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_unmarked='''
        import pytest

        @pytest.fixture
        def sweep_dir(tiny_sweep):
            return tiny_sweep

        def test_direct(ray_session):
            pass

        def test_through_a_fixture(sweep_dir):
            pass

        @pytest.mark.ray
        def test_marked(ray_session):
            pass

        def test_plain():
            pass
    ''')
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = "\n".join(result.errlines)
    assert "tests that start Ray must be marked `ray`" in message
    assert "test_direct" in message and "test_through_a_fixture" in message
    assert "test_marked" not in message and "test_plain" not in message


def test_the_fast_lane_leaves_out_every_marker_that_starts_something() -> None:
    fast = re.search(r"^FAST := (.*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert fast, "the Makefile defines the fast lane's selection"
    for marker in ("ray", "cluster", "subprocess", "browser", "slow", "faults"):
        assert f"not {marker}" in fast.group(1), marker
