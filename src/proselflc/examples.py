"""The example run and sweep configs that ship inside the package, found by name from any directory.

`proselflc tune quickstart`, `proselflc train digits` and `proselflc tune paper/<name>` need no checkout:
the files live in `proselflc/configs/` (package data; the repository's `configs/` is a link to it). A
name is the file's path under that directory without `.yaml`; `configs/quickstart.yaml` and
`quickstart.yaml` name the same file when no such file exists where the command runs. Standard library
and the YAML loader only: the CLI lists them without importing torch or Ray.
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass
from pathlib import Path

from proselflc.errors import ConfigError

#: Where the example configs live inside the installed package.
ROOT = Path(__file__).resolve().parent / "configs"
SUFFIX = ".yaml"
#: `proselflc configs` shows this much of each file's first comment line.
SUMMARY_CHARS = 90


@dataclass(frozen=True)
class Example:
    """One shipped config: its name, its file, whether it is a sweep (`tune`) or a run (`train`), what it is."""

    name: str
    path: Path
    kind: str
    summary: str


def names() -> list[str]:
    """Every shipped config's name (`quickstart`, `paper/paper_cifar100_resnet18_symmetric`, ...), sorted."""
    return sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in ROOT.rglob(f"*{SUFFIX}"))


def _summary(path: Path) -> str:
    """The first comment line of the file: what it is for."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            text = line.lstrip("# ").strip()
            return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3].rstrip() + "..."
        if line.strip():
            break
    return ""


def describe(name: str) -> Example:
    """The shipped config `name` with its kind (a file with `methods:` is a sweep) and its first comment line."""
    from proselflc import safe_yaml

    path = ROOT / f"{name}{SUFFIX}"
    kind = "sweep" if "methods" in safe_yaml.read_mapping(path) else "run"
    return Example(name, path, kind, _summary(path))


def canonical(name: str | Path) -> str | None:
    """The shipped config's name that `name` means (`quickstart`, `quickstart.yaml`, `configs/quickstart.yaml`)."""
    text = Path(name).as_posix().removeprefix("./").removeprefix("configs/").removesuffix(SUFFIX)
    return text if text in names() else None


def find(name: str | Path) -> Path | None:
    """The shipped file that `name` names, or None."""
    text = canonical(name)
    return None if text is None else ROOT / f"{text}{SUFFIX}"


def resolve(arg: str | Path) -> str | Path:
    """A config argument as a file to read: an existing file or a URI as given, else the shipped config it names.

    Neither: a ConfigError saying so, with the closest shipped name, so `proselflc tune quickstart` run from a
    directory without the file still works and a typo lists what there is.
    """
    from proselflc import storage

    if (isinstance(arg, str) and storage.is_uri(arg)) or Path(arg).exists():
        return arg
    shipped = find(arg)
    if shipped is not None:
        return shipped
    stem = Path(arg).as_posix().removeprefix("configs/").removesuffix(SUFFIX)
    raise ConfigError(
        f"config file {str(arg)!r} does not exist, and no config that ships with proselflc is named "
        f"{stem!r} (`proselflc configs` lists them){_did_you_mean(stem)}"
    )


def _did_you_mean(name: str) -> str:
    match = difflib.get_close_matches(name, names(), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def copy_out(name: str, directory: str | Path = ".") -> list[Path]:
    """Copy the shipped config `name` (and the run file a sweep names as its `base`) into `directory`.

    Returns the files written; refuses (ConfigError) to overwrite an existing file, so an edited copy is
    never lost.
    """
    from proselflc import safe_yaml

    source = find(name)
    if source is None:
        raise ConfigError(
            f"no config that ships with proselflc is named {name!r} (`proselflc configs` lists them){_did_you_mean(name)}"
        )
    files = [source]
    base = safe_yaml.read_mapping(source).get("base")
    if isinstance(base, str) and (source.parent / base).is_file():
        files.append(source.parent / base)
    target = Path(directory)
    taken = [str(target / f.name) for f in files if (target / f.name).exists()]
    if taken:
        raise ConfigError(f"{', '.join(taken)} already exist(s); choose another directory or move the file(s) away")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for file in files:
        shutil.copyfile(file, target / file.name)
        written.append(target / file.name)
    return written
