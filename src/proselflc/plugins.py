"""Plugins named in a run or sweep file: the user's modules that register losses, models, datasets or noise kinds.

    plugins: [my_package.noisy_losses, ./my_losses.py]

An entry is a module to import (installed, or on the path) or a `.py` file (relative to the config file).
They are imported before the config is checked, so the names they register are valid in it; a sweep passes
them to its base run config, which every trial worker builds first, so they are imported in each worker
too. A file is imported under its stem as module name (`my_losses`), so objects of its classes pickle by
reference and unpickle in the workers. On a cluster, `runtime_env` ships the files with the job (Ray's
`py_modules`): a worker that does not see the driver's path imports the shipped module by that name.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

from proselflc.errors import ConfigError

#: The file plugins imported in this process: absolute path -> module name.
_LOADED: dict[str, str] = {}
_LOCK = threading.Lock()


def is_file(spec: str) -> bool:
    """Whether a plugin entry names a file (`./my_losses.py`, `/abs/x.py`) rather than a module (`pkg.mod`)."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def resolve(specs: list[Any], root: str | Path = ".", field: str = "plugins") -> list[str]:
    """The entries with file paths made absolute against `root` (the config file's directory); modules as given."""
    if not isinstance(specs, list) or not all(isinstance(s, str) and s.strip() for s in specs):
        raise ConfigError(
            f"{field} = {specs!r}: expected a list of module names or .py files, e.g. [my_package.losses, ./my_losses.py]"
        )
    return [str((Path(root) / s).expanduser().resolve()) if is_file(s) and not Path(s).is_absolute() else s for s in specs]


def load(specs: list[str], field: str = "plugins") -> None:
    """Import every plugin (each once per process); a ConfigError naming the entry and the field on failure."""
    for i, spec in enumerate(specs):
        where = f"{field}[{i}] = {spec!r}"
        try:
            _load_file(spec, where) if is_file(spec) else importlib.import_module(spec)
        except ConfigError:
            raise
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"{where}: no module named {exc.name!r}; install it (pip install ...), put it on PYTHONPATH, or "
                "give the path of a .py file"
            ) from None
        except Exception as exc:  # noqa: BLE001  (the user's module may raise anything: a registration error ...)
            raise ConfigError(f"{where}: importing it failed: {type(exc).__name__}: {exc}") from None


def _load_file(spec: str, where: str) -> None:
    path = Path(spec).expanduser()
    name = path.stem
    with _LOCK:
        if str(path) in _LOADED:
            return
        if not path.is_file():
            shipped = sys.modules.get(name) or _shipped(name)
            if shipped is not None:  # a worker of a cluster job: the file came with the job's py_modules
                return
            raise ConfigError(f"{where}: no such file (a relative path is relative to the config file's directory)")
        known = sys.modules.get(name)
        if known is not None and Path(getattr(known, "__file__", "") or "").resolve() != path.resolve():
            raise ConfigError(
                f"{where}: its module name {name!r} is already taken by {getattr(known, '__file__', None) or known!r}; "
                "rename the file"
            )
        if known is None:
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise ConfigError(f"{where}: not a Python file that can be imported")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        _LOADED[str(path)] = name


def _shipped(name: str) -> Any:
    """The module `name` where it is importable (shipped by runtime_env py_modules), else None."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


def runtime_env(specs: list[str]) -> dict[str, Any]:
    """Ray's runtime_env that ships the plugin files with a job to a cluster's workers ({} when none are files)."""
    files = [s for s in specs if is_file(s)]
    return {"py_modules": files} if files else {}
