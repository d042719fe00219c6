"""Search-space domains as typed data: `{type: loguniform, low: 1e-3, high: 0.1}` in YAML -> a Ray Tune
domain (`to_tune`) and an Optuna distribution (`to_optuna`).

Keeping domains as validated data (not Ray objects) lets a sweep file be checked, printed and written
back as the resolved `sweep.yaml` before Ray is even started. Every type is one Optuna can sample, and
each domain says itself what it is in Ray Tune and in Optuna, so the sweep's samplers and the analysis
(fANOVA, the Optuna export) read one translation: the one Ray Tune's OptunaSearch applies.
"""

from __future__ import annotations

import abc
import math
from typing import Annotated, Any, Literal

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from ray import tune

Scalar = bool | int | float | str


class _Domain(BaseModel, abc.ABC):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @abc.abstractmethod
    def to_tune(self) -> Any:
        """The Ray Tune domain sampling this range."""

    @abc.abstractmethod
    def to_optuna(self) -> BaseDistribution:
        """The Optuna distribution of the same values (what OptunaSearch makes of `to_tune()`)."""

    @abc.abstractmethod
    def edges(self) -> list[Any]:
        """The extreme values the searcher can return: each is checked against the run config up front."""

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.model_dump().items() if k != "type")
        return f"{self.type}({fields})"  # type: ignore[attr-defined]


class _FloatRange(_Domain):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> _FloatRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"low ({self.low!r}) must be finite and below high ({self.high!r})")
        return self

    def edges(self) -> list[Any]:
        return [self.low, self.high]


class Uniform(_FloatRange):
    """Floats uniform in [low, high]."""

    type: Literal["uniform"]

    def to_tune(self) -> Any:
        return tune.uniform(self.low, self.high)

    def to_optuna(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high)


class LogUniform(_FloatRange):
    """Floats log-uniform in [low, high] (low > 0): learning rates, weight decay, ProSelfLC's exp_base."""

    type: Literal["loguniform"]

    @model_validator(mode="after")
    def _positive(self) -> LogUniform:
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {self.low!r})")
        return self

    def to_tune(self) -> Any:
        return tune.loguniform(self.low, self.high)

    def to_optuna(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=True)


class QUniform(_FloatRange):
    """Floats uniform in [low, high], rounded to multiples of q."""

    type: Literal["quniform"]
    q: float = Field(gt=0)

    def to_tune(self) -> Any:
        return tune.quniform(self.low, self.high, self.q)

    def to_optuna(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, step=self.q)


class QLogUniform(_FloatRange):
    """Floats log-uniform in [low, high] (low > 0), rounded to multiples of q."""

    type: Literal["qloguniform"]
    q: float = Field(gt=0)

    @model_validator(mode="after")
    def _positive(self) -> QLogUniform:
        if self.low <= 0:
            raise ValueError(f"qloguniform needs low > 0 (got {self.low!r})")
        return self

    def to_tune(self) -> Any:
        return tune.qloguniform(self.low, self.high, self.q)

    def to_optuna(self) -> BaseDistribution:
        # Optuna has no quantised log scale: OptunaSearch drops q, so the trials see unrounded values.
        return FloatDistribution(self.low, self.high, log=True)


class _IntRange(_Domain):
    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> _IntRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low!r}) must be below high ({self.high!r}); high is exclusive")
        return self

    def edges(self) -> list[Any]:
        return [self.low, self.high - 1]


class RandInt(_IntRange):
    """Integers in [low, high) (Ray's convention: high is exclusive), e.g. warmup epochs."""

    type: Literal["randint"]

    def to_tune(self) -> Any:
        return tune.randint(self.low, self.high)

    def to_optuna(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high - 1)


class LogRandInt(_IntRange):
    """Integers log-uniform in [low, high) (low >= 1), e.g. batch sizes or widths."""

    type: Literal["lograndint"]

    @model_validator(mode="after")
    def _positive(self) -> LogRandInt:
        if self.low < 1:
            raise ValueError(f"lograndint needs low >= 1 (got {self.low!r})")
        return self

    def to_tune(self) -> Any:
        return tune.lograndint(self.low, self.high)

    def to_optuna(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high - 1, log=True)


class QRandInt(_Domain):
    """Integers in [low, high] (inclusive, Ray's convention for qrandint), multiples of q."""

    type: Literal["qrandint"]
    low: int
    high: int
    q: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> QRandInt:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low!r}) must be below high ({self.high!r})")
        return self

    def edges(self) -> list[Any]:
        return [self.low, self.high]

    def to_tune(self) -> Any:
        return tune.qrandint(self.low, self.high, self.q)

    def to_optuna(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high, step=self.q)


class Choice(_Domain):
    """One of `values` (categorical): trust modes, schedules, on/off switches."""

    type: Literal["choice"]
    values: list[Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Choice:
        if len({repr(v) for v in self.values}) != len(self.values):
            raise ValueError(f"choice values {self.values!r} repeat an entry")
        return self

    def edges(self) -> list[Any]:
        return list(self.values)

    def to_tune(self) -> Any:
        return tune.choice(list(self.values))

    def to_optuna(self) -> BaseDistribution:
        return CategoricalDistribution(list(self.values))


Domain = Annotated[
    Uniform | LogUniform | QUniform | QLogUniform | RandInt | LogRandInt | QRandInt | Choice,
    Field(discriminator="type"),
]
DOMAIN_TYPES = ("uniform", "loguniform", "quniform", "qloguniform", "randint", "lograndint", "qrandint", "choice")
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Domain)


def parse_domain(raw: Any) -> _Domain:
    """Validate one raw mapping into a domain (pydantic's ValidationError on bad input)."""
    return _ADAPTER.validate_python(raw)
