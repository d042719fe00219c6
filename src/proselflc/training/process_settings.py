"""Process-wide settings a run changes, held only while it runs and put back afterwards.

torch's thread count and logger levels belong to the whole process: a notebook, a test session or a Ray
worker that trains once and then does something else must get its own settings back. The allocator
thresholds follow the same rule in `proselflc.training.cpu_memory.freed_memory_kept`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` while the block runs (None: left as they are)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def logger_levels(levels: Mapping[str, int]) -> Iterator[None]:
    """Each named logger at its given level while the block runs, then back at the level it had."""
    loggers = [logging.getLogger(name) for name in levels]
    previous = [logger.level for logger in loggers]
    for logger, level in zip(loggers, levels.values()):
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous):
            logger.setLevel(level)
