"""The training engine: one run of one config, in-process (`proselflc train`), reused by Ray trials."""

from proselflc.training.engine import CheckpointError, Engine, resolve_device, train
from proselflc.training.metrics import METRIC_KEYS

__all__ = ["METRIC_KEYS", "CheckpointError", "Engine", "resolve_device", "train"]
