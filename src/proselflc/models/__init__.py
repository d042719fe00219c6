"""Model registry, like timm's `create_model`: `build(name, num_classes, input_shape, **kwargs)`.

Each family lives in its own module and registers a builder here; an unknown name lists the valid
ones with the closest match.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
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
    "shufflenetv2_proselflc": ("vision", "shufflenetv2_proselflc"),
    "resnet50": ("vision", "resnet50"),
    "protein_transformer": ("protein", "protein_transformer"),
}
NAMES = tuple(_REGISTRY)


def check_name(name: str) -> None:
    """Raise a ConfigError naming the valid models when `name` is not one of them."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; {closest(name, NAMES)}")


def _builder(name: str) -> Callable[..., nn.Module]:
    check_name(name)
    module_name, fn_name = _REGISTRY[name]
    return getattr(importlib.import_module(f"proselflc.models.{module_name}"), fn_name)


def check(name: str, **kwargs: Any) -> None:
    """Validate a model name and its keyword arguments against the builder's signature, without building."""
    params = inspect.signature(_builder(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = sorted(set(params) - {"num_classes", "input_shape"})
    for key, value in kwargs.items():
        if key not in allowed:
            raise ConfigError(
                f"model.{key}: model {name!r} has no option {key!r}; allowed: {', '.join(allowed) or '(none)'}"
            )
        default = params[key].default
        if isinstance(value, bool) and isinstance(default, int | float) and not isinstance(default, bool):
            raise ConfigError(f"model.{key}: expected a number (default {default!r}), got a boolean ({value})")


def build(name: str, num_classes: int, input_shape: tuple[int, ...] = (), **kwargs: Any) -> nn.Module:
    """The network `name` for `num_classes` outputs on inputs of per-example shape `input_shape`."""
    builder = _builder(name)
    try:
        return builder(num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad keyword arguments {sorted(kwargs)}: {exc}") from None
