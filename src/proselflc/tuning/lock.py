"""One driver per sweep directory: `<sweep>/.lock`, held with flock for as long as the sweep runs.

Two `proselflc tune --resume` runs on one sweep would both run every trial and move each other's
trial directories aside. The kernel releases a flock when its holder dies (even by SIGKILL), so a
crashed driver never blocks the next one. On a filesystem where flock is not supported, the lock
file alone decides: it is taken over when its holder is a dead process on this host.

On object storage (`storage_path: s3://...`) there is no flock and pyarrow offers no conditional PUT, so
the lock is best effort: a driver refuses a sweep whose `.lock` names a live holder, writes its own record
(with a random token), and reads it back a moment later to see that no other driver overwrote it. Two
drivers started within that moment can both pass; a driver killed with SIGKILL leaves its record, which is
taken over only when it names a dead process on this host: elsewhere, delete the object to free the sweep.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from typing_extensions import Self

from proselflc import storage
from proselflc.errors import ConfigError
from proselflc.io import open_nofollow

LOCK_FILE = ".lock"
#: On object storage: how long to wait before reading the record back to see whether another driver won.
SETTLE_S = 1.0


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

    def __init__(self, sweep_dir: str | Path | storage.Location) -> None:
        self.path = storage.as_dir(sweep_dir) / LOCK_FILE
        self._fh: IO[str] | None = None
        self._token: str | None = None  # the record this driver wrote on object storage

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

    def _acquire_remote(self) -> Self:
        """Best effort on object storage (see the module docstring): refuse a live record, write, read back."""
        info = self.holder()
        here = info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int)
        if info and not (here and not _pid_alive(info["pid"])):  # held, unless by a dead process of this host
            raise self._refuse()
        token = secrets.token_hex(8)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "token": token}
        self.path.parent.mkdir()
        self.path.write_text(json.dumps(record) + "\n")
        time.sleep(SETTLE_S)
        if self.holder().get("token") != token:
            raise self._refuse()
        self._token = token
        return self

    def acquire(self) -> Self:
        """Take the lock or raise ConfigError naming the holder (host, pid, since when): a flock on the local
        disk, the best-effort record where there is no disk to flock (object storage)."""
        path = self.path.local
        if path is None:
            return self._acquire_remote()
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = os.fdopen(open_nofollow(path), "r+")  # a .lock that is a link is refused, its target untouched
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
        """Drop the lock: close the flocked file (which releases the flock) with its record cleared, or clear
        the record this driver wrote on object storage if it is still ours."""
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.flush()
            self._fh.close()
            self._fh = None
        elif self._token is not None:
            if self.holder().get("token") == self._token:
                self.path.write_text("")
            self._token = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
