"""Where a sweep lives: a local directory, or any URI Ray Tune accepts (`s3://`, `gs://`, `hdfs://` ...).

A URI is resolved exactly as Ray Tune resolves `RunConfig(storage_path=...)`: `pyarrow.fs.FileSystem.from_uri`
(Ray's `get_fs_and_path` without a custom filesystem). So the endpoint, region and credentials that reach Ray
reach proselflc's own files too: the URI's query (`?endpoint_override=host:port&scheme=http`) or the
provider's environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `GOOGLE_APPLICATION_CREDENTIALS`, ...).

Every sweep-side file or directory is a `Location`, local or remote (`as_dir` makes one from what the user
typed), so the sweep code never asks which. The difference lives inside its methods: a local Location keeps
every local guarantee (a write is a temp file renamed over the old one, a directory that is a symbolic link is
never removed or replaced, `file://` is a local path) and offers its path for what only a local disk does
(`.local`: flock, Ray's staging directory, pandas). On object storage a written object appears whole or not
at all, and a "move" is a copy then a delete. A local Location works on the disk through pathlib and os, so
pyarrow is imported only for URIs: reading a local sweep needs no pyarrow.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from proselflc.errors import ConfigError
from proselflc.io import atomic_write

if TYPE_CHECKING:
    import pyarrow.fs

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Ray Tune's and proselflc's own state, and model weights: not what the analysis reads.
_NOT_RESULTS = re.compile(r"(^|/)(checkpoint_[^/]*|\.state-backup[^/]*|\.orphaned)(/|$)|\.pkl$")
_MISSING, _FILE, _DIR = 0, 1, 2


def is_uri(value: str | Path) -> bool:
    """Whether `value` names a remote filesystem (a `scheme://` other than `file://`)."""
    text = str(value)
    return isinstance(value, str) and bool(_SCHEME.match(text)) and not text.startswith("file://")


def local_path(value: str | Path) -> Path:
    """A local path, written plainly or as a `file://` URI (which Ray Tune accepts too)."""
    text = str(value)
    return Path(text[len("file://"):]) if isinstance(value, str) and text.startswith("file://") else Path(value)


@dataclass(frozen=True)
class Location:
    """A sweep-side file or directory: on the local disk (`fs` None) or on a pyarrow filesystem.

    `uri` is its name as users and Ray name it (`str()`: a local path as pathlib writes it, a URI with its
    query), `path` its name on the filesystem. Callers use its methods and never ask which kind it is; where a
    caller needs a directory on this machine's disk, `.local` gives it (None on a remote filesystem).
    """

    fs: pyarrow.fs.FileSystem | None = field(compare=False, repr=False)
    path: str
    uri: str

    @classmethod
    def on_disk(cls, path: str | Path) -> Location:
        text = str(path)
        return cls(None, text, text)

    @property
    def local(self) -> Path | None:
        """The path on this machine's disk; None on a remote filesystem."""
        return Path(self.path) if self.fs is None else None

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, name: str) -> Location:
        local = self.local
        if local is not None:
            return Location.on_disk(local / name)
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", _uri_child(self.uri, name))

    @property
    def name(self) -> str:
        local = self.local
        return local.name if local is not None else self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        local = self.local
        if local is not None:
            return Location.on_disk(local.parent)
        parts = urlsplit(self.uri)
        uri = urlunsplit(parts._replace(path=parts.path.rstrip("/").rsplit("/", 1)[0]))
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], uri)

    def _kind(self) -> int:
        local = self.local
        if local is not None:
            return _FILE if local.is_file() else _DIR if local.is_dir() else _MISSING
        import pyarrow.fs as pafs

        kind = self._remote().get_file_info(self.path).type
        return {pafs.FileType.File: _FILE, pafs.FileType.Directory: _DIR}.get(kind, _MISSING)

    def _remote(self) -> pyarrow.fs.FileSystem:
        if self.fs is None:
            raise TypeError(f"{self.uri!r} is on the local disk, not a pyarrow filesystem")
        return self.fs

    def exists(self) -> bool:
        return self._kind() != _MISSING

    def is_file(self) -> bool:
        return self._kind() == _FILE

    def is_dir(self) -> bool:
        return self._kind() == _DIR

    def size(self) -> int:
        """Bytes in the file; -1 when it does not exist or is not a file."""
        local = self.local
        if local is None:
            info = self._remote().get_file_info(self.path)
            return -1 if info.size is None else int(info.size)
        try:
            found = local.stat()
        except FileNotFoundError:
            return -1
        return found.st_size if stat.S_ISREG(found.st_mode) else -1

    def stamp(self) -> tuple[int, int] | None:
        """(mtime in ns, size) of a file on the local disk, to notice that it changed without reading it.

        None when it is missing, and always on a remote filesystem, where every look is a request to the store."""
        local = self.local
        if local is None:
            return None
        try:
            found = local.stat()
        except FileNotFoundError:
            return None
        return (found.st_mtime_ns, found.st_size) if stat.S_ISREG(found.st_mode) else None

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        local = self.local
        if local is not None:
            local.mkdir(parents=parents, exist_ok=exist_ok)
        else:
            self._remote().create_dir(self.path, recursive=True)

    def iterdir(self) -> list[Location]:
        """The directory's entries (a missing remote directory has none; a missing local one raises)."""
        local = self.local
        if local is not None:
            return [Location.on_disk(child) for child in local.iterdir()]
        import pyarrow.fs as pafs

        infos = self._remote().get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return [Location(self.fs, info.path, str(self / info.base_name)) for info in infos]

    def read_bytes(self) -> bytes:
        local = self.local
        if local is not None:
            return local.read_bytes()
        with self._remote().open_input_stream(self.path) as stream:
            return bytes(stream.read())

    def read_text(self, errors: str = "strict") -> str:
        return self.read_bytes().decode("utf-8", errors=errors)

    def write_bytes(self, data: bytes) -> None:
        """Replace the file atomically: a temp file renamed over it (never through a symbolic link) on the
        local disk, one PUT on object storage (which shows the old object or the new one, never a part)."""
        local = self.local
        if local is not None:
            atomic_write(local, lambda out: out.write(data))
            return
        with self._remote().open_output_stream(self.path) as stream:
            stream.write(data)

    def write_text(self, text: str) -> None:
        """Replace the file atomically with `text` (UTF-8); see `write_bytes`."""
        self.write_bytes(text.encode("utf-8"))

    def unlink(self) -> None:
        local = self.local
        if local is not None:
            local.unlink()
        else:
            self._remote().delete_file(self.path)

    def remove_tree(self) -> None:
        """Remove the directory; a local one that is a symbolic link is refused (what it points to is not ours)."""
        local = self.local
        if local is None:
            self._remote().delete_dir(self.path)
            return
        if local.is_symlink():
            raise ConfigError(
                f"{str(local)!r} is a symbolic link (to {os.readlink(local)!r}); proselflc does not remove or "
                "replace a directory through a link. Replace the link with the directory itself, or remove it"
            )
        shutil.rmtree(local)

    def move(self, target: Location) -> None:
        """Move to `target` on the same filesystem (a local rename, or a copy then a delete on object storage,
        which has no rename); `target`'s parent need not exist."""
        here, there = self.local, target.local
        if here is not None and there is not None:
            there.parent.mkdir(exist_ok=True)
            shutil.move(str(here), there)
        elif here is None and there is None:
            self._remote().move(self.path, target.path)
        else:
            raise ValueError(f"cannot move {self.uri!r} to {target.uri!r}: they are not on one filesystem")

    def check_reachable(self, what: str = "storage_path") -> None:
        """Fail fast, naming `what`, when a remote filesystem cannot be reached or read (the local disk always
        can: a failed local write raises its own error)."""
        if self.fs is None:
            return
        try:
            self.fs.get_file_info(self.path)
        except OSError as exc:
            raise ConfigError(f"{what}: cannot reach {self.uri!r}: {exc}") from None


def resolve(uri: str, what: str = "storage_path") -> Location:
    """`uri` on the filesystem Ray Tune would use; a ConfigError naming `what` if pyarrow cannot resolve it."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except OSError as exc:  # e.g. resolving an S3 bucket's region when the URI names none
        raise ConfigError(f"{what}: cannot reach {uri!r}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(
            f"{what}: {uri!r} is not a URI Ray Tune can write to ({exc}); give a local path or a URI such as "
            "s3://bucket/prefix, gs://bucket/prefix or hdfs://host:port/path"
        ) from None
    return Location(fs, path.rstrip("/"), uri)


def uri_name(uri: str) -> str:
    """The last part of a URI's path, its query left out (`s3://b/p/sweep?x=1` -> `sweep`), without resolving
    it: no request to the store, so it also serves while reporting a failure."""
    parts = urlsplit(uri)
    return f"{parts.netloc}{parts.path}".rstrip("/").rsplit("/", 1)[-1]


def as_dir(value: str | Path | Location) -> Location:
    """The one entry: the Location of what a user or a caller names (a URI, a local path or `file://` URI, a
    Path, or a Location, returned as it is)."""
    if isinstance(value, Location):
        return value
    if isinstance(value, Path):
        return Location.on_disk(value)
    return resolve(value) if is_uri(value) else Location.on_disk(local_path(value))


def on_filesystem(fs: pyarrow.fs.FileSystem, path: str) -> Location:
    """The directory Ray Tune names by (filesystem, path), e.g. a trial's experiment."""
    if fs.type_name == "local":
        return Location.on_disk(path)
    scheme = {"gcs": "gs"}.get(fs.type_name, fs.type_name)
    return Location(fs, path, f"{scheme}://{path}")


def join(base: str | Path, name: str) -> str | Path:
    """`base/name` for a local path or a URI (a URI's query, e.g. its endpoint, is kept at the end)."""
    return _uri_child(str(base), name) if is_uri(base) else Path(base) / name


def _uri_child(uri: str, name: str) -> str:
    """`uri` with `/name` appended to its path; its query (e.g. an endpoint) stays at the end."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


def read_mapping(target: str | Path | Location) -> dict[str, Any]:
    """A YAML mapping (e.g. a stored sweep.yaml) from a local file or a URI, through the hardened loader."""
    from proselflc import safe_yaml

    where = as_dir(target)
    try:
        if where.local is not None:
            return safe_yaml.read_mapping(where.local)
        if not where.is_file():
            raise ConfigError(f"config file {where.uri!r} does not exist")
        data = safe_yaml.load_text(where.read_text(), source=where.uri)
    except safe_yaml.YamlRefused as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where.uri!r}: expected a YAML mapping of sweep fields")
    return data


def download_results(location: Location, into: Path) -> Path:
    """Copy what the analysis reads (sweep.yaml, manifest.json, every trial's params/results/errors) into
    `into`; checkpoints, Ray's pickles and the signed state stay in the store. Returns `into`."""
    import pyarrow.fs as pafs

    if not location.is_dir():
        raise ConfigError(f"sweep directory {location.uri!r} does not exist")
    fs = location._remote()
    selector = pafs.FileSelector(location.path, recursive=True)
    prefix = location.path.rstrip("/") + "/"
    for info in fs.get_file_info(selector):
        relative = info.path[len(prefix):]
        if info.type != pafs.FileType.File or _NOT_RESULTS.search(relative):
            continue
        with fs.open_input_stream(info.path) as stream:
            data = stream.read()
        atomic_write(into / relative, lambda out, data=data: out.write(data), root=into)  # a key with '..' stays in
    return into


@contextlib.contextmanager
def local_copy(sweep: str | Path | Location) -> Iterator[Path]:
    """A local directory with the sweep's results: the directory itself when local, else a temporary copy
    read through pyarrow (removed afterwards)."""
    where = as_dir(sweep)
    if where.local is not None:
        yield where.local
        return
    with tempfile.TemporaryDirectory(prefix="proselflc-sweep-") as tmp:
        yield download_results(where, Path(tmp) / where.name)


def upload_dir(local: Path, uri: str) -> Location:
    """Copy a local directory's files to `uri` (e.g. a report the user asked to be written into the bucket)."""
    import pyarrow.fs as pafs

    target = resolve(uri, "--out")
    target.mkdir()
    pafs.copy_files(str(local), target.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=target.fs)
    return target
