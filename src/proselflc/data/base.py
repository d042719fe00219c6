"""The Dataset contract the Engine trains on, and the in-memory implementation most datasets use.

The Engine never knows the modality: it asks a dataset for a batch of indices and gets a tensor on
its device, already normalised (and augmented when training). In-memory datasets keep everything
on the device and slice it, so the GPU never waits on Python or on worker processes.

Every dataset registers its loader `load(cfg: DataConfig, **options) -> Dataset` in `DATASETS` where the
loader is defined, saying what the config checks need to know about it (`needs_root`, `real_noise`); the
loader's keyword arguments are the dataset's own options (`data.<option>` keys, checked by the registry). A new
dataset is one module in this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from proselflc.dataset_registry import DATASETS
from proselflc.registry import Param

__all__ = ["DATASETS", "TEST_FRACTION", "Dataset", "Split"]

#: `test_fraction`, the share of the examples held out as the clean test set, of every loader that splits one off.
TEST_FRACTION = Param(low=0.0, high=1.0, low_open=True, high_open=True, help="share held out as the clean test set")

Split = Literal["train", "test"]


@dataclass
class Dataset:
    """Inputs and labels of a train and a test split, plus what a model needs to know about them.

    `train_labels` are the labels as published: clean for benchmarks that inject synthetic noise,
    already noisy for real-world noisy datasets (`labels_are_noisy`), whose `test_labels` are clean.
    """

    name: str
    train_inputs: Any
    train_labels: np.ndarray
    test_inputs: Any
    test_labels: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    classes: list[str] = field(default_factory=list)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    labels_are_noisy: bool = False
    #: The true labels of a noisy-labelled training set where they are known (a table's clean-label column):
    #: then which examples are noisy is known, and noisy_fit / noisy_corrected / clean_fit are computed.
    train_clean_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.train_labels = np.asarray(self.train_labels, dtype=np.int64)
        self.test_labels = np.asarray(self.test_labels, dtype=np.int64)
        if self.train_clean_labels is not None:
            self.train_clean_labels = np.asarray(self.train_clean_labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.train_labels)

    def to(self, device: torch.device) -> Dataset:
        """A copy whose tensors live on `device` (done once per run, not per batch)."""
        move = lambda x: x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x
        return replace(self, train_inputs=move(self.train_inputs), test_inputs=move(self.test_inputs))

    def batch(
        self, split: Split, index: torch.Tensor, *, augment: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Inputs `index` of `split`, on the inputs' device, ready for the model."""
        inputs = self.train_inputs if split == "train" else self.test_inputs
        return self.prepare(inputs[index.to(inputs.device)], augment=augment, generator=generator)

    def prepare(self, x: torch.Tensor, *, augment: bool, generator: torch.Generator | None) -> torch.Tensor:
        """Per-batch transform (normalisation, augmentation); identity for ready-made float inputs."""
        return x

    def limit(self, n: int | None) -> Dataset:
        """The first `n` training examples only, for smoke runs and tests."""
        if n is None or n >= len(self):
            return self
        clean = None if self.train_clean_labels is None else self.train_clean_labels[:n]
        return replace(self, train_inputs=self.train_inputs[:n], train_labels=self.train_labels[:n],
                       train_clean_labels=clean)
