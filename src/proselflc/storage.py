"""Where a sweep lives: a local directory, or any URI Ray Tune accepts (`s3://`, `gs://`, `hdfs://` ...).

A URI is resolved exactly as Ray Tune resolves `RunConfig(storage_path=...)`: `pyarrow.fs.FileSystem.from_uri`
(Ray's `get_fs_and_path` without a custom filesystem). So the endpoint, region and credentials that reach Ray
reach proselflc's own files too: the URI's query (`?endpoint_override=host:port&scheme=http`) or the
provider's environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `GOOGLE_APPLICATION_CREDENTIALS`, ...).

Local paths stay `pathlib.Path` and keep every local guarantee (atomic renames, flock). A URI becomes a
`Location`, which offers the few Path methods the sweep runner and the analysis use. An object store has
no rename: a written object appears whole or not at all, and a "move" is a copy then a delete.
pyarrow is imported only for URIs, so reading a local sweep needs no pyarrow.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from proselflc.errors import ConfigError
from proselflc.io import atomic_write, atomic_write_text

if TYPE_CHECKING:
    import pyarrow.fs

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Ray Tune's and proselflc's own state, and model weights: not what the analysis reads.
_NOT_RESULTS = re.compile(r"(^|/)(checkpoint_[^/]*|\.state-backup[^/]*|\.orphaned)(/|$)|\.pkl$")


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
    """A file or directory on a pyarrow filesystem: `uri` as users and Ray name it, `path` as pyarrow does."""

    fs: pyarrow.fs.FileSystem = field(compare=False, repr=False)
    path: str
    uri: str

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, name: str) -> Location:
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", _uri_child(self.uri, name))

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        parts = urlsplit(self.uri)
        uri = urlunsplit(parts._replace(path=parts.path.rstrip("/").rsplit("/", 1)[0]))
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], uri)

    def _type(self) -> int:
        import pyarrow.fs as pafs

        kind = self.fs.get_file_info(self.path).type
        return {pafs.FileType.File: 1, pafs.FileType.Directory: 2}.get(kind, 0)

    def exists(self) -> bool:
        return self._type() > 0

    def is_file(self) -> bool:
        return self._type() == 1

    def is_dir(self) -> bool:
        return self._type() == 2

    def size(self) -> int:
        """Bytes in the file; -1 when it does not exist."""
        info = self.fs.get_file_info(self.path)
        return -1 if info.size is None else int(info.size)

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return bytes(stream.read())

    def read_text(self, errors: str = "strict") -> str:
        return self.read_bytes().decode("utf-8", errors=errors)

    def write_bytes(self, data: bytes) -> None:
        """One PUT: the object store shows the old object or the new one, never a part."""
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def iterdir(self) -> list[Location]:
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return [Location(self.fs, info.path, str(self / info.base_name)) for info in infos]

    def rmtree(self) -> None:
        self.fs.delete_dir(self.path)

    def move(self, target: Location) -> None:
        """Copy then delete (an object store has no rename); `target`'s parent need not exist."""
        self.fs.move(self.path, target.path)


#: What the sweep code handles: a local directory or a remote one.
Dir = Path | Location


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


def as_dir(value: str | Path | Location) -> Dir:
    """A Location for a URI, a Path for anything else (what the contract and the analysis accept)."""
    if isinstance(value, Location | Path):
        return value
    return resolve(value) if is_uri(value) else local_path(value)


def on_filesystem(fs: pyarrow.fs.FileSystem, path: str) -> Dir:
    """The directory Ray Tune names by (filesystem, path), e.g. a trial's experiment: a Path when local."""
    if fs.type_name == "local":
        return Path(path)
    scheme = {"gcs": "gs"}.get(fs.type_name, fs.type_name)
    return Location(fs, path, f"{scheme}://{path}")


def join(base: str | Path, name: str) -> str | Path:
    """`base/name` for a local path or a URI (a URI's query, e.g. its endpoint, is kept at the end)."""
    return _uri_child(str(base), name) if is_uri(base) else Path(base) / name


def _uri_child(uri: str, name: str) -> str:
    """`uri` with `/name` appended to its path; its query (e.g. an endpoint) stays at the end."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


def read_mapping(target: Dir) -> dict[str, Any]:
    """A YAML mapping (e.g. a stored sweep.yaml) from a local file or a URI, through the hardened loader."""
    from proselflc import safe_yaml

    try:
        if isinstance(target, Path):
            return safe_yaml.read_mapping(target)
        if not target.is_file():
            raise ConfigError(f"config file {target.uri!r} does not exist")
        data = safe_yaml.load_text(target.read_text(), source=target.uri)
    except safe_yaml.YamlRefused as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{target.uri!r}: expected a YAML mapping of sweep fields")
    return data


def check_reachable(location: Location, what: str = "storage_path") -> None:
    """Fail fast, naming `what`, when the filesystem behind `location` cannot be reached or read."""
    try:
        location.fs.get_file_info(location.path)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot reach {location.uri!r}: {exc}") from None


def write_text(target: Dir, text: str) -> None:
    """Replace a file atomically (a local rename, or one object PUT)."""
    if isinstance(target, Location):
        target.write_text(text)
    else:
        atomic_write_text(target, text)


def size(target: Dir) -> int:
    """Bytes in a file; -1 when it does not exist or is not a file."""
    if isinstance(target, Location):
        return target.size()
    try:
        info = Path(target).stat()
    except FileNotFoundError:
        return -1
    return info.st_size if stat.S_ISREG(info.st_mode) else -1


def remove_tree(target: Dir) -> None:
    """Remove a directory; a local one that is a symbolic link is refused (what it points to is not ours)."""
    if isinstance(target, Location):
        target.rmtree()
    else:
        import shutil

        if Path(target).is_symlink():
            raise ConfigError(
                f"{str(target)!r} is a symbolic link (to {os.readlink(target)!r}); proselflc does not remove or "
                "replace a directory through a link. Replace the link with the directory itself, or remove it"
            )
        shutil.rmtree(target)


def move(source: Dir, target: Dir) -> None:
    if isinstance(source, Location) and isinstance(target, Location):
        source.move(target)
    else:
        import shutil

        Path(target).parent.mkdir(exist_ok=True)
        shutil.move(str(source), target)


def download_results(location: Location, into: Path) -> Path:
    """Copy what the analysis reads (sweep.yaml, manifest.json, every trial's params/results/errors) into
    `into`; checkpoints, Ray's pickles and the signed state stay in the store. Returns `into`."""
    import pyarrow.fs as pafs

    if not location.is_dir():
        raise ConfigError(f"sweep directory {location.uri!r} does not exist")
    selector = pafs.FileSelector(location.path, recursive=True)
    prefix = location.path.rstrip("/") + "/"
    for info in location.fs.get_file_info(selector):
        relative = info.path[len(prefix):]
        if info.type != pafs.FileType.File or _NOT_RESULTS.search(relative):
            continue
        with location.fs.open_input_stream(info.path) as stream:
            data = stream.read()
        atomic_write(into / relative, lambda out, data=data: out.write(data), root=into)  # a key with '..' stays in
    return into


@contextlib.contextmanager
def local_copy(sweep: str | Path | Location) -> Iterator[Path]:
    """A local directory with the sweep's results: the directory itself when local, else a temporary copy
    read through pyarrow (removed afterwards)."""
    where = as_dir(sweep)
    if isinstance(where, Path):
        yield where
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
