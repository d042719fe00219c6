"""Model registry, like timm's `create_model`: `build(name, num_classes, input_shape, **kwargs)`.

Each family lives in its own module and registers a builder here; an unknown name lists the valid
ones with the closest match.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from proselflc.config import ConfigError, closest

#: model name -> (module under proselflc.models, builder function name)
_REGISTRY: dict[str, tuple[str, str]] = {
    "mlp": ("small", "mlp"),
    "cnn": ("small", "cnn"),
    "resnet18": ("vision", "resnet18"),
    "preactresnet18": ("vision", "preactresnet18"),
    "shufflenetv2": ("vision", "shufflenetv2"),
    "resnet50": ("vision", "resnet50"),
    "protein_transformer": ("protein", "protein_transformer"),
}
NAMES = tuple(_REGISTRY)


def check_name(name: str) -> None:
    """Raise a ConfigError naming the valid models when `name` is not one of them."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; {closest(name, NAMES)}")


def build(name: str, num_classes: int, input_shape: tuple[int, ...] = (), **kwargs: Any) -> nn.Module:
    """The network `name` for `num_classes` outputs on inputs of per-example shape `input_shape`."""
    check_name(name)
    module_name, fn_name = _REGISTRY[name]
    builder = getattr(importlib.import_module(f"proselflc.models.{module_name}"), fn_name)
    try:
        return builder(num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad keyword arguments {sorted(kwargs)}: {exc}") from None
