"""scikit-learn's handwritten digits: the embedded default dataset (ships with scikit-learn, no download)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from proselflc.data.base import DATASETS, TEST_FRACTION, Dataset

if TYPE_CHECKING:
    from proselflc.config import DataConfig

#: Fixed so that every run, trial and seed sees the same clean test set.
SPLIT_SEED = 0


@DATASETS.register("digits", needs_root=False, params={"test_fraction": TEST_FRACTION})
def load(cfg: DataConfig, test_fraction: float = 0.25) -> Dataset:
    """1,797 8x8 grey images in 10 classes, split into train and a stratified clean test set (`test_fraction`).

    Pixels (0..16) are scaled to [0, 1] and stored as (N, 1, 8, 8) float32, which both the MLP
    (it flattens) and the CNN read.
    """
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=SPLIT_SEED, stratify=labels
    )
    return Dataset(
        name="digits",
        train_inputs=torch.from_numpy(x_train),
        train_labels=y_train,
        test_inputs=torch.from_numpy(x_test),
        test_labels=y_test,
        num_classes=10,
        input_shape=(1, 8, 8),
        classes=[str(i) for i in range(10)],
    )
