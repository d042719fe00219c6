"""Loss registry: `build(name, num_classes, **hyperparameters)`, `check`, `NAMES`, `hyperparameters`.

Each loss registers itself in `LOSSES` (`proselflc.losses.base`) where its class is defined, with its
hyperparameters' ranges; a new loss is one module in this package plus its search-space preset.
`check` is what config validation and the tuning layer call, so a bad value in a YAML file or a
search space fails before any training with the same message `build` would give.
"""

from __future__ import annotations

from typing import Any

from proselflc.losses.base import LOSSES, Loss
from proselflc.losses.target_modification import CP_DEFINITIONS, TRUST_MODES

__all__ = ["CP_DEFINITIONS", "LOSSES", "NAMES", "TRUST_MODES", "Loss", "build", "check", "hyperparameters"]


def __getattr__(name: str) -> Any:
    # NAMES follows the registry, so a loss registered later (a plugin, a test) is listed too.
    if name == "NAMES":
        return LOSSES.names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def hyperparameters(name: str) -> dict[str, Any]:
    """{hyperparameter: default} for loss `name` (YAML keys, e.g. 'lambda' for dm_imae)."""
    return LOSSES.defaults(name)


def check(name: str, **hp: Any) -> None:
    """Raise ConfigError (a ValueError; same messages as `build`) if `name` or any hyperparameter is invalid.

    Builds the loss (cheap: no parameters) so checks across hyperparameters run here too.
    """
    build(name, 2, **hp)


def build(name: str, num_classes: int, **hp: Any) -> Loss:
    """The loss `name` for `num_classes` classes; `hp` are its hyperparameters (see `hyperparameters`)."""
    return LOSSES.build(name, num_classes, **hp)
