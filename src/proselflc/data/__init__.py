"""Datasets by name: `load(DataConfig) -> Dataset`, the embedded digits and the papers' benchmarks."""

from __future__ import annotations

import importlib

from proselflc.config import DATASETS, ConfigError, DataConfig, closest
from proselflc.data.base import Dataset

__all__ = ["DATASETS", "Dataset", "load"]

#: dataset name -> module under proselflc.data exposing `load(cfg) -> Dataset`
_MODULES = {
    "digits": "digits",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "deeploc": "deeploc",
    "clothing1m": "webly",
    "food101n": "webly",
}


def load(cfg: DataConfig) -> Dataset:
    """Load the dataset named in `cfg` (CPU tensors; the Engine moves them to its device)."""
    if cfg.name not in _MODULES:
        raise ConfigError(f"data.name: unknown dataset {cfg.name!r}; {closest(cfg.name, DATASETS)}")
    module = importlib.import_module(f"proselflc.data.{_MODULES[cfg.name]}")
    return module.load(cfg).limit(cfg.limit)
