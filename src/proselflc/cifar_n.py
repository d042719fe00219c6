"""CIFAR-N human label files (Wei et al., ICLR 2022; UCSC-REAL/cifar-10-100n): read, check, pick a label set.

The authors publish one torch-saved dict per dataset, not shipped here (CC BY-NC 4.0): `CIFAR-10_human.pt`
with `clean_label`, `aggre_label`, `random_label1..3`, `worse_label`, and `CIFAR-100_human.pt` with
`clean_label`, `noisy_label`; each value is a (50000,) integer array in the order of torchvision's CIFAR
training set. The file is read with `torch.load(weights_only=True)`, numpy's array rebuild allowed by name
(the authors' pickles were written by numpy 1.x, whose module was `numpy.core`), so it can hold arrays and
tensors, never code. Its clean labels must equal the dataset's training labels: a file for the other
dataset, another order or a truncated copy is refused before training.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from proselflc.errors import ConfigError

#: label_set -> (key in the file, number of classes of the dataset it belongs to).
LABEL_SETS: dict[str, tuple[str, int]] = {
    "aggre": ("aggre_label", 10),
    "random1": ("random_label1", 10),
    "random2": ("random_label2", 10),
    "random3": ("random_label3", 10),
    "worse": ("worse_label", 10),
    "noisy100": ("noisy_label", 100),
}
CLEAN_KEY = "clean_label"


def _numpy_globals() -> list:
    """What unpickling a numpy array needs, under numpy 2's and numpy 1's module names."""
    from numpy._core.multiarray import _reconstruct

    integer_dtypes = [type(np.dtype(t)) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)]
    return [
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *integer_dtypes,
    ]


def read_label_file(path: str | Path) -> dict[str, np.ndarray]:
    """The file's {key: int64 labels}; a ConfigError naming `noise.file` when it is missing or not such a dict."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"noise.file = {str(path)!r} does not exist; download CIFAR-10_human.pt / CIFAR-100_human.pt from "
            "https://github.com/UCSC-REAL/cifar-10-100n (data/) and point noise.file at it"
        )
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"noise.file = {str(path)!r} was refused: not a CIFAR-N label file (a torch-saved dict of label "
            f"arrays) or it holds objects other than arrays ({first})"
        ) from None
    if not isinstance(content, dict):
        raise ConfigError(f"noise.file = {str(path)!r} holds a {type(content).__name__}, not the CIFAR-N dict of labels")
    out = {}
    for key, value in content.items():
        labels = np.asarray(value.cpu().numpy() if isinstance(value, torch.Tensor) else value)
        if labels.dtype.kind in "iu":
            out[str(key)] = labels.reshape(-1).astype(np.int64)
    return out


def human_labels(path: str | Path, label_set: str, clean: np.ndarray, num_classes: int) -> np.ndarray:
    """The label set's noisy labels, once the file's clean labels are seen to be exactly `clean`."""
    key, classes = LABEL_SETS[label_set]
    if classes != num_classes:
        fits = ", ".join(name for name, (_, c) in LABEL_SETS.items() if c == num_classes) or "none"
        raise ConfigError(
            f"noise.label_set = {label_set!r} belongs to the {classes}-class CIFAR-N file; this dataset has "
            f"{num_classes} classes (label sets for it: {fits})"
        )
    labels = read_label_file(path)
    missing = [k for k in (CLEAN_KEY, key) if k not in labels]
    if missing:
        raise ConfigError(
            f"noise.file = {str(path)!r} lacks {', '.join(repr(k) for k in missing)} (it has: "
            f"{', '.join(sorted(labels)) or 'no integer label arrays'}); label_set {label_set!r} needs {key!r}"
        )
    file_clean, noisy = labels[CLEAN_KEY], labels[key]
    if len(file_clean) != len(clean) or len(noisy) != len(clean):
        raise ConfigError(
            f"noise.file = {str(path)!r} labels {len(file_clean)} examples ({key!r}: {len(noisy)}); the training "
            f"set has {len(clean)}: it is not this dataset's CIFAR-N file"
        )
    differ = np.flatnonzero(file_clean != clean)
    if differ.size:
        i = int(differ[0])
        raise ConfigError(
            f"noise.file = {str(path)!r}: its clean labels differ from the dataset's training labels at "
            f"{differ.size} of {len(clean)} examples (first: example {i}, file {int(file_clean[i])}, dataset "
            f"{int(clean[i])}): the file belongs to another dataset or another image order"
        )
    if noisy.min() < 0 or noisy.max() >= num_classes:
        raise ConfigError(f"noise.file = {str(path)!r}: {key!r} holds labels outside [0, {num_classes})")
    return noisy.copy()
