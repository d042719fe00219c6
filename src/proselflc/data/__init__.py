"""Datasets by name: `load(DataConfig) -> Dataset`, the embedded digits and the papers' benchmarks.

Each dataset module registers its loader in `DATASETS` (`proselflc.data.base`); a new dataset is one
module in this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proselflc.data.base import DATASETS, Dataset

if TYPE_CHECKING:
    from proselflc.config import DataConfig

__all__ = ["DATASETS", "Dataset", "load"]


def load(cfg: DataConfig) -> Dataset:
    """Load the dataset named in `cfg` (CPU tensors; the Engine moves them to its device)."""
    dataset: Dataset = DATASETS.build(cfg.name, cfg, **cfg.options)
    return dataset.limit(cfg.limit)


def __getattr__(name: str) -> Any:
    # NAMES follows the registry, so a dataset registered later (a plugin, a test) is listed too.
    if name == "NAMES":
        return DATASETS.names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
