"""A driver that cannot go on says so: a watch on Ray Tune's controller loop, never a silent wait.

While a sweep runs, Ray Tune's controller steps many times a second, even when every trial waits for
resources, and the sweep's monitor notes each step (`beat`). If no step comes for `quiet_s` seconds
(restoring a Tuner that never starts, a controller stuck on Ray), the watch prints what the driver is
waiting on and writes every thread's stack into a file it names, then says so again every `quiet_s`.
It never stops the sweep: Ctrl+C does, and `--resume` continues from the saved state.
"""

from __future__ import annotations

import faulthandler
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from proselflc.errors import ConfigError

#: Seconds without a controller step before the driver says it is stuck (PROSELFLC_STALL_WARN_S overrides).
QUIET_S = 120.0
QUIET_ENV = "PROSELFLC_STALL_WARN_S"
STACKS_FILE = "driver-stacks.txt"

_last_step: float | None = None


def beat() -> None:
    """Ray Tune's controller took a step (called by the sweep's monitor, in the driver)."""
    global _last_step
    _last_step = time.monotonic()


def quiet_s() -> float:
    raw = os.environ.get(QUIET_ENV)
    if raw is None:
        return QUIET_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{QUIET_ENV}={raw!r}: expected a number of seconds above 0")
    return value


class StallWatch:
    """Context manager around a Tuner's restore and fit: warns, with stacks, while the controller is silent."""

    def __init__(
        self, log: Callable[[str], None], *, stacks_dir: Path | None, doing: str, quiet: float | None = None
    ) -> None:
        self.log = log
        self.doing = doing
        self.quiet = quiet_s() if quiet is None else quiet
        self.stacks = (stacks_dir if stacks_dir is not None else Path(tempfile.gettempdir())) / (
            STACKS_FILE if stacks_dir is not None else f"proselflc-{os.getpid()}-{STACKS_FILE}"
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="proselflc-stall-watch", daemon=True)

    def __enter__(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        quiet_since, warned = None, 0
        while not self._stop.wait(min(5.0, self.quiet / 4)):
            started = _last_step is not None and _last_step >= self._started
            since = _last_step if started else self._started
            if since != quiet_since:  # a step came: count the silence afresh
                quiet_since, warned = since, 0
            silent = time.monotonic() - since
            if silent < self.quiet * (warned + 1):
                continue
            warned += 1
            where = self._dump()
            state = (
                f"Ray Tune's controller has not stepped for {silent:.0f} s"
                if started
                else f"Ray Tune has not started the sweep after {silent:.0f} s ({self.doing})"
            )
            self.log(
                f"  still waiting: {state}; the driver waits on Ray, not on a trial. Its threads' stacks: {where}. "
                "Ctrl+C stops it (the sweep's state is kept; --resume continues it)"
            )

    def _dump(self) -> str:
        try:
            self.stacks.parent.mkdir(parents=True, exist_ok=True)
            with self.stacks.open("a") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ({self.doing})\n")
                handle.flush()
                faulthandler.dump_traceback(file=handle, all_threads=True)
        except OSError as exc:
            return f"not written ({exc})"
        return str(self.stacks)
