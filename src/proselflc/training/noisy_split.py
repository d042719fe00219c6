"""The labels a run learns from: noise the whole training set, then hold a validation split out of it.

In this order the validation labels are as noisy as the training labels, as they are in real life, so
`val_accuracy` is an honest selection metric; the test labels stay clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proselflc import noise as noise_lib
from proselflc.config import NoiseConfig
from proselflc.errors import ConfigError


@dataclass(frozen=True)
class NoisySplit:
    """Noisy labels of the whole training set, which of them the noise changed, and the two index sets.

    `is_noisy` is None where the noise is unknown (datasets whose published labels are already noisy).
    """

    noisy: np.ndarray
    is_noisy: np.ndarray | None
    train_index: np.ndarray
    val_index: np.ndarray


def noisy_split(
    true_labels: np.ndarray,
    noise: NoiseConfig,
    *,
    num_classes: int,
    val_fraction: float,
    seed: int,
    labels_are_noisy: bool = False,
    clean_labels: np.ndarray | None = None,
) -> NoisySplit:
    """Corrupt `true_labels` with `noise` (seeded by `noise.seed`, else `seed`), then split by a `seed` permutation.

    Labels that are already noisy (`labels_are_noisy`), and any labels under noise kind `none`, are used as
    they are: the noise mask is where they differ from `clean_labels` when those are known, unknown (None) for
    noisy labels without them, and empty for clean labels. Synthetic noise on top of noisy labels is refused.
    """
    if labels_are_noisy and noise.kind != "none" and noise.rate > 0:
        raise ConfigError(
            f"the dataset's training labels are already noisy; noise.kind {noise.kind!r} at rate {noise.rate:g} "
            "would add synthetic noise on top: use noise.kind: none (the labels as given)"
        )
    if labels_are_noisy or noise.kind == "none":
        noisy = true_labels
        if clean_labels is not None:
            is_noisy = noisy != clean_labels
        else:
            is_noisy = None if labels_are_noisy else np.zeros(len(noisy), dtype=bool)
    else:
        corrupted = noise_lib.corrupt(
            true_labels,
            kind=noise.kind,
            rate=noise.rate,
            num_classes=num_classes,
            seed=noise.seed if noise.seed is not None else seed,
            matrix=None if noise.matrix is None else np.asarray(noise.matrix, dtype=np.float64),
            allow_true_label=noise.allow_true_label,
            label_set=noise.label_set,
            file=None if noise.file is None else str(noise.file),
        )
        noisy, is_noisy = corrupted.noisy, corrupted.is_noisy
    n = len(true_labels)
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(val_fraction * n)
    if n - n_val < 2:
        raise ConfigError(
            f"data.val_fraction = {val_fraction} leaves {n - n_val} training examples; at least 2 are needed"
        )
    return NoisySplit(noisy=noisy, is_noisy=is_noisy, train_index=np.sort(order[n_val:]), val_index=np.sort(order[:n_val]))
