"""Dataset pickles read as data: a restricted unpickler that builds only what dataset files hold.

`pickle.load` calls whatever a file names (`os.system`, `subprocess.Popen`, ...) while it reads it, so a
replaced batch file under `data.root` would run code before any check on its contents. Dataset files
(torchvision's CIFAR batches) hold dicts, lists, str, bytes, numbers and numpy arrays, so the unpickler
here resolves only the numpy functions that rebuild an array and a dtype; any other name is refused, naming
the file, before anything is called. Every pickle read from a dataset goes through `load`.
"""

from __future__ import annotations

import _codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """Python 3's protocol-0..2 pickles write bytes as `_codecs.encode(text, 'latin1')`: only that form."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode is allowed only as (str, 'latin1'), got encoding {encoding!r}")
    return _codecs.encode(text, "latin1")


def _numpy_names() -> dict[tuple[str, str], Any]:
    """The globals a pickled ndarray names: its rebuild functions (numpy 1 and 2 module names), ndarray, dtype."""
    import importlib

    core = "numpy._core" if hasattr(np, "_core") else "numpy.core"
    multiarray, numeric = importlib.import_module(f"{core}.multiarray"), importlib.import_module(f"{core}.numeric")
    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        names[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        names[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return names


_ALLOWED: dict[tuple[str, str], Any] = {**_numpy_names(), ("_codecs", "encode"): _latin1}


class DataUnpickler(pickle.Unpickler):
    """Refuses every global but numpy's array rebuilders; persistent ids are refused by pickle itself."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a dataset file never holds (only dicts, lists, strings, "
                "bytes, numbers and numpy arrays are read)"
            ) from None


def load(path: str | Path, what: str = "data.root") -> Any:
    """The object pickled at `path`, built by `DataUnpickler`; a ValueError naming `what` and the file when
    the file is empty, not a pickle, or names anything but plain data (nothing it names is ever called)."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            return DataUnpickler(fh, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            reason = " ".join(str(exc).split()).rstrip(".")
        except EOFError:
            reason = "it is empty or cut short"
        except Exception as exc:  # noqa: BLE001  (garbage bytes raise anything: ValueError, KeyError, TypeError ...)
            reason = f"it is not a pickle ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    raise ValueError(
        f"{what}: {str(path)!r} is refused as a dataset file: {reason}. Replace it with the original "
        "file (or delete it and set data.download: true); proselflc never runs code from a data file"
    )
