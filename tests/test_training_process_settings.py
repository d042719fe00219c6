"""What a run changes for the whole process (torch threads, logger levels, allocator thresholds) holds while
it trains and is put back afterwards, also when the run is abandoned or fails."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch

from proselflc.config import build_run_config
from proselflc.training import Engine, cpu_memory
from proselflc.training.process_settings import logger_levels, torch_threads

TINY = {
    "name": "tiny",
    "data": {"limit": 300},
    "noise": {"kind": "symmetric", "rate": 0.4},
    "model": {"name": "mlp", "hidden": 16},
    "train": {"epochs": 3, "batch_size": 64, "seed": 3, "progress": False, "device": "cpu", "threads": 1},
}


@pytest.fixture
def two_threads() -> Iterator[None]:
    """The process at 2 torch threads (the run asks for 1), and the test session's own count afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def test_a_run_trains_with_its_threads_and_gives_the_process_its_own_back(two_threads: None) -> None:
    engine = Engine(build_run_config(TINY))
    during = [(torch.get_num_threads(), cpu_memory._holders) for _ in engine.epochs()]
    assert during == [(1, 1)] * 3, "train.threads and the allocator setting hold for every epoch"
    assert (torch.get_num_threads(), cpu_memory._holders) == (2, 0)


def test_an_abandoned_or_failed_run_gives_the_settings_back_too(two_threads: None) -> None:
    engine = Engine(build_run_config(TINY))
    rows = engine.epochs()
    next(rows)
    assert torch.get_num_threads() == 1
    rows.close()  # what dropping the loop early does
    assert (torch.get_num_threads(), cpu_memory._holders) == (2, 0)

    def fail(*_: object) -> None:
        raise RuntimeError("evaluation failed")

    failing = Engine(build_run_config(TINY))
    failing.evaluate = fail
    with pytest.raises(RuntimeError, match="evaluation failed"):
        failing.run()
    assert (torch.get_num_threads(), cpu_memory._holders) == (2, 0)


def test_a_run_without_train_threads_keeps_the_process_s_threads(two_threads: None) -> None:
    raw = {**TINY, "train": {**TINY["train"], "threads": None, "epochs": 1}}
    engine = Engine(build_run_config(raw))
    assert [torch.get_num_threads() for _ in engine.epochs()] == [2]


def test_scoped_settings_nest_and_restore_on_errors(two_threads: None) -> None:
    quiet = logging.getLogger("proselflc.test.quiet")
    quiet.setLevel(logging.DEBUG)
    with pytest.raises(KeyError), logger_levels({"proselflc.test.quiet": logging.WARNING}), torch_threads(1):
        assert (quiet.level, torch.get_num_threads()) == (logging.WARNING, 1)
        with torch_threads(None):
            assert torch.get_num_threads() == 1
        raise KeyError("boom")
    assert (quiet.level, torch.get_num_threads()) == (logging.DEBUG, 2)
