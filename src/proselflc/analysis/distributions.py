"""Optuna distributions of a study's searched hyperparameters: the one place that maps a sweep to them.

Both the fANOVA importances (an in-memory study) and the Optuna storage export (a study the Optuna
Dashboard reads) need each trial's parameters as Optuna values under one distribution per parameter.
Distributions come from the search space recorded in sweep.yaml, falling back to the sampled values'
range and kind when the space does not cover a parameter (or no longer holds what was sampled).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import ValidationError

from proselflc.analysis.load import hyperparameter_columns
from proselflc.search_spaces.domains import parse_domain

#: Not a hyperparameter: seeds vary by design and carry no transferable signal.
NOT_SEARCHED = ("train.seed",)
#: A positive float range spanning this factor or more is treated as log-scaled (lr, weight decay).
_LOG_SPAN = 100.0


def search_distributions(
    group: pd.DataFrame, space: dict[str, dict[str, Any]] | None = None, *, varying_only: bool = False
) -> dict[str, BaseDistribution]:
    """{dotted param: distribution} for the search trials in `group` (rows of one study).

    A parameter counts when `space` searches it or its sampled values vary across the trials;
    with `varying_only`, only when they vary (what fANOVA can score).
    """
    space = space or {}
    firsts = group.groupby("trial_id", sort=False).first()
    out: dict[str, BaseDistribution] = {}
    for param in hyperparameter_columns(group):
        if param in NOT_SEARCHED:
            continue
        values = firsts[param].dropna() if param in firsts else pd.Series(dtype=float)
        varies = values.nunique() > 1
        if values.empty or not (varies or (param in space and not varying_only)):
            continue
        out[param] = distribution(values, space.get(param))
    return out


def trial_params(row: pd.Series, distributions: dict[str, BaseDistribution]) -> dict[str, Any]:
    """One trial's values of `distributions`' parameters as Optuna-native values; missing ones left out."""
    params = {p: native(row[p], d) for p, d in distributions.items() if p in row.index}
    return {p: v for p, v in params.items() if v is not None}


def distribution(values: pd.Series, spec: dict[str, Any] | None = None) -> BaseDistribution:
    """The searched domain from `spec` when it holds every sampled value, else the narrowest one that does."""
    present = values.dropna()
    recorded = from_spec(spec) if spec else None
    if recorded is not None and all(_holds(recorded, v) for v in present):
        return recorded
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        return CategoricalDistribution(sorted({_choice(v) for v in present}, key=str))
    if pd.api.types.is_integer_dtype(present):
        return IntDistribution(int(present.min()), int(present.max()))
    low, high = float(present.min()), float(present.max())
    return FloatDistribution(low, high, log=low > 0 and high / low >= _LOG_SPAN)


def from_spec(spec: dict[str, Any]) -> BaseDistribution | None:
    """A sweep.yaml domain as the Optuna distribution its study's sampler searched; None if it no longer parses."""
    try:
        return parse_domain(spec).to_optuna()
    except (ValidationError, TypeError):
        return None


def native(value: Any, distribution: BaseDistribution) -> Any:
    """`value` as the Python type `distribution` holds; None for a missing (NaN) value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(distribution, IntDistribution):
        return int(value)
    if isinstance(distribution, FloatDistribution):
        return float(value)
    return _choice(value)


def _holds(distribution: BaseDistribution, value: Any) -> bool:
    """Whether Optuna accepts `value` under `distribution` (bounds and, for quantised domains, the step)."""
    if isinstance(distribution, CategoricalDistribution):
        return _choice(value) in distribution.choices
    if not isinstance(value, (int, float, np.number)) or isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(distribution, IntDistribution) and not float(value).is_integer():
        return False
    if isinstance(distribution, (IntDistribution, FloatDistribution)):
        return distribution._contains(float(value))  # Optuna's own check, the one its storage applies
    return False


def _choice(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
