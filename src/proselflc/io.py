"""Atomic file writes: a crash mid-write leaves the old file or the new one, never a truncated one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast


class _RecordingFile:
    """The file handed to `write`: keeps the OSError of a full or read-only disk.

    torch.save turns that error into an opaque RuntimeError ("unexpected pos ..."); the recorded one
    lets `atomic_write` say "no space left" and name the file instead.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(fileobj)` on a temp file beside `path`, fsync it, then rename it over `path`.

    A failed write leaves the old file, removes the temp file and raises an OSError naming `path`
    (errno ENOSPC, EROFS ... intact), whatever the writer turned the disk error into.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    recording: _RecordingFile | None = None
    try:
        with os.fdopen(fd, "wb") as fh:
            recording = _RecordingFile(fh)
            write(cast(IO[bytes], recording))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        disk = exc if isinstance(exc, OSError) else recording.error if recording else None
        if disk is not None and disk.errno is not None and disk.filename is None:
            raise OSError(disk.errno, disk.strerror, str(path)) from exc
        if disk is not None and disk is not exc:
            raise disk from exc
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically replace `path` with `text` (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
