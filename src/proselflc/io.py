"""The one way proselflc writes a file: atomically, never through a link, never outside its directory.

A crash mid-write leaves the old file or the new one, never a truncated one. A symbolic link at the
destination (planted in a shared sweep or report directory) is refused rather than followed, so no file
elsewhere is overwritten or truncated; and a name built from a manifest's or a trial's values (a study's
`dataset`, say) is made one plain file name and kept inside the directory it is written to.
"""

from __future__ import annotations

import errno
import os
import re
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


class UnsafePath(ValueError):
    """A destination that is a symbolic link, or that a name would move outside its directory."""


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.+=-]+")


def safe_name(text: str) -> str:
    """`text` as one plain file name: separators, '..' and anything unusual become '_', no leading dot.

    For names built from values read back from a sweep (a study's dataset, model, noise kind ...).
    """
    name = _UNSAFE_CHARS.sub("_", str(text)).lstrip(".")
    return name or "_"


def inside(root: str | Path, path: str | Path) -> Path:
    """`path` once it is certain to lie inside `root`, else UnsafePath (both relative to the current directory).

    Checked on the normalised path ('a/../..' collapsed), so no name can climb out of `root`.
    """
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, target]) != base or target == base:
        raise UnsafePath(f"{str(path)!r} would be written outside {base!r}; refused (a name holding '/' or '..')")
    return Path(target)


def refuse_link(path: str | Path) -> Path:
    """`path` unless it is a symbolic link (dangling or not): then UnsafePath naming it and its target."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafePath(
            f"{str(path)!r} is a symbolic link (to {os.readlink(path)!r}); proselflc does not write through links, "
            "which could overwrite a file elsewhere. Remove the link, or choose another output location"
        )
    return path


def open_nofollow(path: str | Path, flags: int = os.O_RDWR | os.O_CREAT, mode: int = 0o644) -> int:
    """`os.open` that refuses a symbolic link as the last component (O_NOFOLLOW): for files held open."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], root: str | Path | None = None) -> Path:
    """Call `write(fileobj)` on a temp file beside `path`, fsync it, then rename it over `path`.

    `path` must not be a symbolic link (UnsafePath; the rename would not follow it, but a link there is
    someone's mistake or trap, and the user should know), and with `root` it must lie inside `root`.
    A failed write leaves the old file, removes the temp file and raises an OSError naming `path`
    (errno ENOSPC, EROFS ... intact), whatever the writer turned the disk error into.
    """
    path = inside(root, path) if root is not None else Path(path)
    refuse_link(path)
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


def atomic_write_text(path: str | Path, text: str, root: str | Path | None = None) -> Path:
    """Atomically replace `path` with `text` (UTF-8); see `atomic_write`."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), root=root)
