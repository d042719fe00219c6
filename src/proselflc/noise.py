"""Synthetic label noise: `corrupt(labels, kind, rate, num_classes, seed) -> NoisyLabels`.

Every generator is a pure function of its inputs (its own `numpy.random.Generator`, never the
global RNG) and flips an exact number of labels, so a (kind, rate, seed) triple names one noisy
training set and `is_noisy` tells the training loop which examples it may memorise.

Each kind registers its generator `fn(y, rate, num_classes, rng, **options) -> noisy labels` in
`NOISE_KINDS`; its keyword options are the `noise.*` keys only that kind reads (`allow_true_label`,
`matrix`), and its registration says what the config checks need (`uses_rate`, `dataset`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from proselflc.cifar_n import LABEL_SETS
from proselflc.registry import Param, Registry

#: Every noise kind, by `noise.kind`. Per kind: `uses_rate` (default true; false: `noise.rate` must be
#: 0) and `dataset` (the only dataset it applies to, or a tuple of them).
NOISE_KINDS = Registry("noise kind", "noise", positional=("y", "rate", "num_classes", "rng"))

#: CIFAR-100 fine label (index) -> coarse superclass, in torchvision's label order.
CIFAR100_FINE_TO_COARSE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
    3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
    16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
    2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)  # fmt: skip

_ROW_SUM_TOLERANCE = 1e-6


class NoisyLabels(NamedTuple):
    """The corrupted labels and which of them differ from the originals."""

    noisy: np.ndarray  # int64, same shape as the input labels
    is_noisy: np.ndarray  # bool, noisy != labels


def n_flips(rate: float, n: int) -> int:
    """round(rate * n), rounding halves up (Python's round() would round 2.5 down to 2)."""
    return int(np.floor(rate * n + 0.5))


def corrupt(
    labels: ArrayLike,
    kind: str,
    rate: float,
    num_classes: int,
    seed: int,
    matrix: ArrayLike | None = None,
    allow_true_label: bool = False,
    label_set: str | None = None,
    file: str | None = None,
) -> NoisyLabels:
    """Corrupt `labels` with noise `kind` at `rate`; the input is never modified.

    symmetric: exactly round(rate N) examples, chosen uniformly, each moved to a different class
    chosen uniformly (ProSelfLC protocol); `allow_true_label=True` is the DivideMix variant where
    the new class is drawn from all C classes, so some chosen labels stay clean.
    pairflip: round(rate n_c) examples of each class c go to (c + 1) mod C.
    cifar100_superclass: in each of the 20 superclasses two fine classes A, B are picked and
    round(rate n_A) labels of A become B and round(rate n_B) labels of B become A.
    matrix: row c of the row-stochastic C x C `matrix` gives where class c's labels go, with
    per-class counts fixed by largest-remainder rounding of matrix[c] * n_c; `rate` must be 0,
    since the matrix alone sets the noise.
    human: CIFAR-N's human labels, `label_set` read from the label `file` once its clean labels are
    seen to equal `labels` (see `proselflc.cifar_n`); `rate` must be 0 (the annotators set the noise).
    """
    y = _check_labels(labels, num_classes)
    NOISE_KINDS.entry(kind)
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"noise.rate = {rate!r} is outside the allowed range [0, 1)")
    # Only the options a caller set are passed, so a kind that does not read one names it.
    options = {"allow_true_label": True} if allow_true_label else {}
    if matrix is not None:
        options["matrix"] = matrix
    options.update({k: v for k, v in (("label_set", label_set), ("file", file)) if v is not None})
    noisy = NOISE_KINDS.build(kind, y, rate, num_classes, np.random.default_rng(seed), **options)
    return NoisyLabels(noisy=noisy, is_noisy=noisy != y)


def _check_labels(labels: ArrayLike, num_classes: int) -> np.ndarray:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes = {num_classes!r} must be an integer >= 2")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices; got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64, copy=True)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"labels[{i}] = {y[i]} is outside [0, {num_classes}) ({int(bad.sum())} label(s) out of range)"
        )
    return y


@NOISE_KINDS.register("none", uses_rate=False)
def _none(y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """The labels as given: real noise already in them (table, imagefolder, ...) or none at all."""
    if rate != 0:
        raise ValueError(f"noise kind 'none' adds no noise; noise.rate must be 0 (got {rate})")
    return y.copy()


@NOISE_KINDS.register("symmetric")
def _symmetric(
    y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator, allow_true_label: bool = False
) -> np.ndarray:
    noisy = y.copy()
    chosen = rng.choice(y.size, size=n_flips(rate, y.size), replace=False)
    if allow_true_label:
        noisy[chosen] = rng.integers(0, num_classes, size=chosen.size)
    else:
        # Uniform over the C - 1 other classes: draw from [0, C-1) and skip over the true class.
        new = rng.integers(0, num_classes - 1, size=chosen.size)
        noisy[chosen] = new + (new >= y[chosen])
    return noisy


@NOISE_KINDS.register("pairflip")
def _pairflip(y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    noisy = y.copy()
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        chosen = rng.choice(members, size=n_flips(rate, members.size), replace=False)
        noisy[chosen] = (c + 1) % num_classes
    return noisy


@NOISE_KINDS.register("cifar100_superclass", dataset="cifar100")
def _cifar100_superclass(
    y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    if num_classes != len(CIFAR100_FINE_TO_COARSE):
        raise ValueError(f"noise kind 'cifar100_superclass' needs num_classes = 100 (got {num_classes})")
    fine_to_coarse = np.asarray(CIFAR100_FINE_TO_COARSE)
    noisy = y.copy()
    for coarse in range(int(fine_to_coarse.max()) + 1):
        a, b = rng.choice(np.flatnonzero(fine_to_coarse == coarse), size=2, replace=False)
        for source, target in ((a, b), (b, a)):
            members = np.flatnonzero(y == source)
            chosen = rng.choice(members, size=n_flips(rate, members.size), replace=False)
            noisy[chosen] = target
    return noisy


def check_matrix(matrix: ArrayLike, num_classes: int) -> np.ndarray:
    """The matrix as float64 if it is a row-stochastic num_classes x num_classes matrix; else ValueError."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (num_classes, num_classes):
        raise ValueError(f"noise.matrix must be {num_classes} x {num_classes}; got shape {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError("noise.matrix must hold finite, non-negative probabilities")
    sums = m.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
    if off.size:
        raise ValueError(
            f"noise.matrix must be row-stochastic: row {int(off[0])} sums to {sums[off[0]]:.6g}, not 1"
        )
    return m


@NOISE_KINDS.register(
    "matrix", params={"matrix": Param(help="a row-stochastic C x C list of lists")}, uses_rate=False
)
def _matrix(
    y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator, matrix: ArrayLike
) -> np.ndarray:
    if rate != 0:
        raise ValueError(
            f"noise kind 'matrix' takes its noise from noise.matrix; noise.rate must be 0 (got {rate})"
        )
    m = check_matrix(matrix, num_classes)
    noisy = y.copy()
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(y == c))
        counts = _largest_remainder(m[c] * members.size)
        noisy[members] = np.repeat(np.arange(num_classes), counts)
    return noisy


@NOISE_KINDS.register(
    "human",
    params={
        "label_set": Param(choices=tuple(LABEL_SETS), help="which CIFAR-N annotation: " + ", ".join(LABEL_SETS)),
        "file": Param(help="path to CIFAR-N's label file (CIFAR-10_human.pt or CIFAR-100_human.pt)"),
    },
    uses_rate=False,
    dataset=("cifar10", "cifar100"),
)
def _human(
    y: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator, label_set: str, file: str
) -> np.ndarray:
    if rate != 0:
        raise ValueError(f"noise kind 'human' takes its noise from the annotators; noise.rate must be 0 (got {rate})")
    from proselflc.cifar_n import human_labels

    return human_labels(file, label_set, y, num_classes)


def _largest_remainder(expected: np.ndarray) -> np.ndarray:
    """Integer counts that sum to round(sum(expected)) and are each floor or ceil of `expected`."""
    counts = np.floor(expected).astype(np.int64)
    short = round(float(expected.sum())) - int(counts.sum())
    if short > 0:
        order = np.argsort(-(expected - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def __getattr__(name: str) -> Any:
    # KINDS follows the registry, so a kind registered later (a plugin, a test) is listed too.
    if name == "KINDS":
        return NOISE_KINDS.names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
