"""Keep freed memory in the process on CPU while a run trains, so training steps stop paying for page faults.

glibc serves allocations above its mmap threshold (at most 32 MiB by default) with a fresh `mmap` and
returns them to the kernel on `free`. A CNN's activations at batch 128 are about that size, so every
step maps, zero-fills and unmaps hundreds of MiB: on a 2-core machine this was 200k page faults and
~7% of a ResNet-18 step. Raising the mmap and trim thresholds makes freed blocks reusable instead; the
process keeps its peak footprint, which the next step needs again anyway. This is the effect PyTorch's
CPU tuning guide gets by preloading jemalloc or tcmalloc, without asking users to set LD_PRELOAD.

The setting is process-wide, so the Engine holds it only while it trains (`freed_memory_kept`) and then
puts glibc's default thresholds back: a notebook or a long-lived worker returns its memory between runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import platform
import threading
from collections.abc import Callable, Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # blocks up to 1 GiB come from (and return to) the heap
FALLBACK_THRESHOLD = 32 << 20  # the most that older glibc accepts
#: glibc's initial mmap and trim thresholds (DEFAULT_MMAP_THRESHOLD_MIN, DEFAULT_TRIM_THRESHOLD): what a
#: process starts with. glibc has no call that turns its dynamic mmap threshold back on, so a restored
#: process keeps these starting values fixed.
GLIBC_DEFAULT_THRESHOLD = 128 * 1024

_lock = threading.Lock()
#: How many runs hold the setting now, and whether glibc took it when the first one entered.
_holders = 0
_kept = False


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's `mallopt`, or None where the libc is not glibc (looked up once, changes nothing)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def mallopt_available() -> bool:
    """Whether this process can set glibc's thresholds (asking changes no setting)."""
    return _mallopt() is not None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where the libc is not glibc."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if not (mallopt(M_MMAP_THRESHOLD, THRESHOLD) or mallopt(M_MMAP_THRESHOLD, FALLBACK_THRESHOLD)):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))


def restore_default_thresholds() -> bool:
    """Put glibc's starting mmap and trim thresholds back, so freed large blocks return to the kernel again."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD))


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Keep freed memory while the block runs; yields whether glibc took the setting.

    Nested and concurrent holders share one setting: the thresholds go back when the last one leaves.
    """
    global _holders, _kept
    with _lock:
        if _holders == 0:
            _kept = keep_freed_memory()
        _holders += 1
        kept = _kept
    try:
        yield kept
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _kept:
                restore_default_thresholds()
