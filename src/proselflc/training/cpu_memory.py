"""Keep freed memory in the process on CPU, so training steps stop paying for page faults.

glibc serves allocations above its mmap threshold (at most 32 MiB by default) with a fresh `mmap` and
returns them to the kernel on `free`. A CNN's activations at batch 128 are about that size, so every
step maps, zero-fills and unmaps hundreds of MiB: on a 2-core machine this was 200k page faults and
~7% of a ResNet-18 step. Raising the mmap and trim thresholds makes freed blocks reusable instead; the
process keeps its peak footprint, which the next step needs again anyway. This is the effect PyTorch's
CPU tuning guide gets by preloading jemalloc or tcmalloc, without asking users to set LD_PRELOAD.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # blocks up to 1 GiB come from (and return to) the heap
FALLBACK_THRESHOLD = 32 << 20  # the most that older glibc accepts


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where the libc is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, THRESHOLD) or mallopt(M_MMAP_THRESHOLD, FALLBACK_THRESHOLD)):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
