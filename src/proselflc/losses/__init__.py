"""Loss registry: `build(name, num_classes, **hyperparameters)`, `check`, `NAMES`, `hyperparameters`.

`check` is what config validation and the tuning layer call, so a bad value in a YAML file or a
search space fails before any training with the same message `build` would give.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass
from typing import Any

from proselflc.config import closest, one_of
from proselflc.losses.base import Loss
from proselflc.losses.derivative_manipulation import DMIMAE
from proselflc.losses.robust import GCE, MAE, MSE, SCE
from proselflc.losses.target_modification import (
    CP_DEFINITIONS,
    TRUST_MODES,
    ConfidencePenalty,
    CrossEntropy,
    LabelCorrection,
    LabelSmoothing,
    ProSelfLC,
)

__all__ = ["CP_DEFINITIONS", "NAMES", "TRUST_MODES", "Loss", "build", "check", "hyperparameters"]


@dataclass(frozen=True)
class _Param:
    """One hyperparameter: default, allowed range (or choices) and the constructor argument it feeds."""

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    arg: str | None = None

    def allowed(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def validate(self, loss: str, key: str, value: Any) -> Any:
        where = f"loss.{key} = {value!r} (loss {loss!r})"
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{where} is not a valid choice; {closest(str(value), self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            # ValueError, not TypeError: pydantic turns only ValueErrors into field errors.
            raise ValueError(  # noqa: TRY004
                f"{where} must be a number in {self.allowed()}"
            )
        number = float(value)
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        too_high = self.high is not None and (number >= self.high if self.high_open else number > self.high)
        if math.isnan(number) or too_low or too_high:
            raise ValueError(f"{where} is outside the allowed range {self.allowed()}")
        return number


_EPSILON = _Param(0.1, 0.0, 1.0)
_LOGIT_TEMPERATURE = _Param(1.0, 0.0, low_open=True)

_REGISTRY: dict[str, tuple[type[Loss], dict[str, _Param]]] = {
    "crossentropy": (CrossEntropy, {}),
    "labelsmoothing": (LabelSmoothing, {"epsilon": _EPSILON}),
    "confidencepenalty": (
        ConfidencePenalty,
        {
            "epsilon": _EPSILON,
            "definition": _Param("entropy", choices=CP_DEFINITIONS),
            "logit_temperature": _LOGIT_TEMPERATURE,
        },
    ),
    # Reed et al.'s soft bootstrapping keeps beta = 0.95 of the label: epsilon = 0.05.
    "labelcorrection": (
        LabelCorrection,
        {"epsilon": _Param(0.05, 0.0, 1.0), "logit_temperature": _LOGIT_TEMPERATURE},
    ),
    "proselflc": (
        ProSelfLC,
        {
            "exp_base": _Param(16.0, 0.0),
            "transit_time_ratio": _Param(0.5, 0.0, 1.0),
            "trust_mode": _Param("global", choices=TRUST_MODES),
            "logit_temperature": _LOGIT_TEMPERATURE,
        },
    ),
    "dm_imae": (DMIMAE, {"beta": _Param(2.0, 0.0), "lambda": _Param(0.0, 0.0, arg="lam")}),
    "mae": (MAE, {}),
    "mse": (MSE, {}),
    "gce": (GCE, {"q": _Param(0.7, 0.0, 1.0, low_open=True)}),
    "sce": (SCE, {"alpha": _Param(0.1, 0.0), "beta": _Param(1.0, 0.0)}),
}

#: Every loss name `build` accepts, in the order of DESIGN.md.
NAMES: tuple[str, ...] = tuple(_REGISTRY)


def _spec(name: str) -> tuple[type[Loss], dict[str, _Param]]:
    return _REGISTRY[one_of(name, NAMES, "loss")]


def hyperparameters(name: str) -> dict[str, Any]:
    """{hyperparameter: default} for loss `name` (YAML keys, e.g. 'lambda' for dm_imae)."""
    return {key: param.default for key, param in _spec(name)[1].items()}


def _validated(name: str, hp: dict[str, Any]) -> dict[str, Any]:
    """Constructor kwargs after checking every key and value; defaults fill what is missing."""
    _, params = _spec(name)
    for key in hp:
        if key not in params:
            allowed = ", ".join(sorted(params)) or "none"
            match = difflib.get_close_matches(str(key), list(params), n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise ValueError(f"loss {name!r} has no hyperparameter {key!r}; allowed: {allowed}{hint}")
    kwargs = {}
    for key, param in params.items():
        value = param.validate(name, key, hp[key]) if key in hp else param.default
        kwargs[param.arg or key] = value
    return kwargs


def check(name: str, **hp: Any) -> None:
    """Raise ValueError (same messages as `build`) if `name` or any hyperparameter is invalid.

    Builds the loss (cheap: no parameters) so checks across hyperparameters run here too.
    """
    build(name, 2, **hp)


def build(name: str, num_classes: int, **hp: Any) -> Loss:
    """The loss `name` for `num_classes` classes; `hp` are its hyperparameters (see `hyperparameters`)."""
    cls, _ = _spec(name)
    return cls(num_classes, **_validated(name, hp))
