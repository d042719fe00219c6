"""Shared fixtures: ONE local Ray for the whole test session, and one tiny real sweep reused by tests.

Starting Ray costs seconds and each trial about one more, so every Ray test shares the instance
started here (2 CPUs, 2 fake GPUs so fractional-GPU packing can be tested on CPU-only machines),
and tests that only read a sweep directory reuse `tiny_sweep` instead of running their own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: A digits sweep small enough for tests: seconds per study, still real Ray, Optuna and ASHA.
TINY_SWEEP: dict[str, Any] = {
    "name": "tiny",
    "base": {
        "data": {"name": "digits", "limit": 600},
        "model": {"name": "mlp", "hidden": 16},
        "optim": {"lr": 0.1, "schedule": "constant"},
        "train": {"epochs": 3, "batch_size": 64, "seed": 0},
    },
    "noise": {"kind": "symmetric", "rates": [0.0, 0.4]},
    "methods": {
        "crossentropy": {"search": {"optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.5}}},
        "proselflc": {
            "hyperparameters": {"trust_mode": "entropy"},
            "search": {
                "loss.exp_base": {"type": "loguniform", "low": 2.0, "high": 32.0},
                "optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.5},
            },
        },
    },
    "num_samples": 3,
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "searcher": {"seed": 0},
    "resources": {"cpu": 1, "gpu": 0},
    "max_concurrent_trials": 1,
    "final_seeds": 2,
    "max_failures": 0,
}


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """The session's local Ray: 2 CPUs and 2 fake GPUs, no dashboard, its own short temp dir, on 127.0.0.1 only.

    Every test's traffic stays on loopback: Ray listens on 127.0.0.1 only, and the drivers tests start against it
    (the CLI with RAY_ADDRESS, notebooks) inherit Ray's local-only switch, without which a driver takes the
    machine's address as its node IP and waits forever for a local node of that address."""
    import ray

    from proselflc import ray_compat

    saved = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", ray_compat.RAY_LOCAL_ONLY_ENV) if k in os.environ}
    os.environ[ray_compat.RAY_LOCAL_ONLY_ENV] = "0"
    # Ray puts Unix sockets under its temp dir: keep the path short (sockets are limited to ~107 chars).
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray_compat.init_on_loopback(
        num_cpus=2, num_gpus=2, include_dashboard=False, _temp_dir=temp_dir, logging_level="WARNING"
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        os.environ.pop(ray_compat.RAY_LOCAL_ONLY_ENV, None)
        os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_sweep(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run TINY_SWEEP once (2 noise rates x 2 methods, 3 samples, 3 epochs, 2 final seeds); its sweep dir."""
    from proselflc.tuning import build_sweep_config, run_sweep

    storage = tmp_path_factory.mktemp("tiny-sweep")
    sweep = build_sweep_config({**TINY_SWEEP, "storage_path": str(storage)})
    return run_sweep(sweep)


#: Tests marked `last` run at the end of the session: their slow part (an idle wait) overlaps every other test.
LAST = "last"


#: Fixtures that start the session's Ray (directly or through the tiny sweep): a test using one must be marked `ray`.
RAY_FIXTURES = frozenset({"ray_session", "tiny_sweep"})


def unmarked_ray_tests(items: list[pytest.Item]) -> list[str]:
    """The ids of tests that use a Ray fixture (directly or through another fixture) but are not marked `ray`."""
    return [
        item.nodeid
        for item in items
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("ray")
    ]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without this check a test could start Ray in `make test-fast`, whose selection is by marker.
    unmarked = unmarked_ray_tests(items)
    if unmarked:
        raise pytest.UsageError("tests that start Ray must be marked `ray`: " + ", ".join(unmarked))
    late = [item for item in items if item.get_closest_marker(LAST)]
    items[:] = [item for item in items if not item.get_closest_marker(LAST)] + late


@pytest.fixture(scope="session")
def sigkilled_local_ray() -> tuple[list[int], float]:
    """A driver that started its own local Ray (through proselflc), SIGKILLed: its Ray processes' pids and when.

    Ray's agents wait out a 60 s report to the dead GCS before they exit, so the check runs last (`last`) and
    this driver is killed when the session starts (`_start_background_checks`): the wait overlaps the suite."""
    import signal
    import time

    from test_ray_loopback import start_driver

    proc, seen = start_driver("wait")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return seen["pids"], time.monotonic()


@pytest.fixture(scope="session", autouse=True)
def _start_background_checks(request: pytest.FixtureRequest) -> None:
    """Start, with the first test, the fixtures whose slow part runs in the background (when a test needs them)."""
    if any("sigkilled_local_ray" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("sigkilled_local_ray")
