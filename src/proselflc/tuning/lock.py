"""One driver per sweep directory: `<sweep>/.lock`, held with flock for as long as the sweep runs.

Two `proselflc tune --resume` runs on one sweep would both run every trial and move each other's
trial directories aside. The kernel releases a flock when its holder dies (even by SIGKILL), so a
crashed driver never blocks the next one. On a filesystem where flock is not supported, the lock
file alone decides: it is taken over when its holder is a dead process on this host.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from typing_extensions import Self

from proselflc.config import ConfigError

LOCK_FILE = ".lock"


def _holder_text(info: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')!r}, since {since}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class SweepLock:
    """`with SweepLock(sweep_dir):` run the sweep; a second holder gets a ConfigError naming the first.

    The lock file holds JSON {"host", "pid", "since"} of the holder; it is left in place on release
    (an unlocked file is not a held lock).
    """

    def __init__(self, sweep_dir: str | Path) -> None:
        self.path = Path(sweep_dir) / LOCK_FILE
        self._fh: IO[str] | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its holder ({} when unreadable or empty)."""
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _refuse(self) -> ConfigError:
        return ConfigError(
            f"sweep directory {str(self.path.parent)!r} is in use by another proselflc driver "
            f"({_holder_text(self.holder())}). Wait for it to finish or stop it; two drivers on one sweep "
            f"would run every trial twice. If no such process exists, delete {str(self.path)!r}"
        )

    def _stale_without_flock(self) -> bool:
        """Without flock: the recorded holder is this host's dead process (or the record is unreadable)."""
        info = self.holder()
        if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
            return not info
        return not _pid_alive(info["pid"]) or info["pid"] == os.getpid()

    def acquire(self) -> Self:
        """Take the lock or raise ConfigError naming the holder (host, pid, since when)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise self._refuse() from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                fh.close()
                raise
            if not self._stale_without_flock():  # no flock here: the file's record decides
                fh.close()
                raise self._refuse() from None
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        self._fh = fh
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock) and mark the record released."""
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.flush()
        self._fh.close()
        self._fh = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
