"""Model registry, like timm's `create_model`: `build(name, num_classes, input_shape, **kwargs)`.

Each family lives in its own module and registers its builders in `MODELS` (`proselflc.models.base`);
an unknown name lists the valid ones with the closest match, an unknown option the builder's options.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from proselflc.errors import ConfigError
from proselflc.models.base import MODELS

__all__ = ["MODELS", "NAMES", "build", "check", "check_name"]


def __getattr__(name: str) -> Any:
    # NAMES follows the registry, so a model registered later (a plugin, a test) is listed too.
    if name == "NAMES":
        return MODELS.names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_name(name: str) -> None:
    """Raise a ConfigError naming the valid models when `name` is not one of them."""
    MODELS.entry(name)


def check(name: str, **kwargs: Any) -> None:
    """Validate a model name and its keyword arguments against the builder's signature, without building."""
    MODELS.check(name, kwargs)


def build(name: str, num_classes: int, input_shape: tuple[int, ...] = (), **kwargs: Any) -> nn.Module:
    """The network `name` for `num_classes` outputs on inputs of per-example shape `input_shape`."""
    try:
        return MODELS.build(name, num_classes, tuple(input_shape), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad keyword arguments {sorted(kwargs)}: {exc}") from None
