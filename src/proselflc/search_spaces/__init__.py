"""Search spaces per method: YAML presets shipped with the package, validated, turned into Ray Tune domains.

A search space maps dotted RunConfig paths (`loss.exp_base`, `optim.lr`, `model.hidden`) to domains.
Trials receive exactly those keys as their config (Ray writes them to params.json), and the trainable
applies them onto the study's base config with `apply_params` before validating it, so the keys a
search samples are the keys an analysis reads back, and a bad range fails before Ray starts.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from proselflc import dotted, losses
from proselflc.config import OptimConfig, TrainConfig, build_run_config, format_validation_error
from proselflc.errors import ConfigError, closest
from proselflc.search_spaces.domains import DOMAIN_TYPES, parse_domain

__all__ = [
    "DOMAIN_TYPES",
    "PRESETS",
    "SearchSpace",
    "apply_params",
    "build_space",
    "preset",
    "resolve",
    "to_optuna",
    "to_tune",
]

#: A validated search space: dotted RunConfig path -> domain (see `domains`).
SearchSpace = dict[str, Any]

#: Keys a sweep controls itself, so a search space may not sample them.
_OWNED_BY_SWEEP = {
    "loss.name": "each method is its own study (methods.<name>.loss)",
    "train.epochs": "the trial length is asha.max_t",
    "train.seed": "search trials share base.train.seed; final_seeds re-runs draw fresh seeds",
}
_SECTIONS = ("loss", "optim", "train", "model")


def _preset_files() -> dict[str, Any]:
    root = resources.files(__name__)
    return {p.name.removesuffix(".yaml"): p for p in root.iterdir() if p.name.endswith(".yaml")}


#: Names of the shipped presets (one per method, named after the loss).
PRESETS: tuple[str, ...] = tuple(sorted(_preset_files()))


def preset(name: str) -> dict[str, Any]:
    """The raw mapping of preset `name` (a copy: callers may edit it)."""
    files = _preset_files()
    if name not in files:
        raise ConfigError(f"unknown search-space preset {name!r}; {closest(name, PRESETS)}")
    data = yaml.safe_load(files[name].read_text()) or {}
    return dict(data)


def resolve(search: str | dict[str, Any] | None, loss: str) -> dict[str, Any]:
    """The raw space a method asks for.

    None: the preset named after the loss (or nothing when there is none); a string: that preset;
    a mapping: its entries, on top of `preset: NAME` when given (an entry set to null drops a preset key).
    """
    if search is None:
        return preset(loss) if loss in PRESETS else {}
    if isinstance(search, str):
        return preset(search)
    if not isinstance(search, dict):
        raise ConfigError(
            f"search must be a preset name ({', '.join(PRESETS)}) or a mapping of dotted keys to domains, "
            f"got {type(search).__name__}"
        )
    entries = dict(search)
    base_name = entries.pop("preset", None)
    space = preset(base_name) if base_name is not None else {}
    for key, value in entries.items():
        if value is None:
            space.pop(key, None)
        else:
            space[key] = value
    return space


def _check_key(key: str, loss: str, where: str) -> None:
    if key in _OWNED_BY_SWEEP:
        raise ConfigError(f"{where}.{key}: cannot be searched: {_OWNED_BY_SWEEP[key]}")
    section, _, field = key.partition(".")
    if not field or section not in _SECTIONS:
        raise ConfigError(
            f"{where}.{key}: search keys are dotted RunConfig paths starting with one of "
            f"{', '.join(_SECTIONS)} (e.g. loss.exp_base, optim.lr); data and noise are fixed per study"
        )
    valid: tuple[str, ...] | None
    if section == "loss":
        valid = tuple(losses.hyperparameters(loss))
    elif section == "optim":
        valid = tuple(OptimConfig.model_fields)
    elif section == "train":
        valid = tuple(f for f in TrainConfig.model_fields if f"train.{f}" not in _OWNED_BY_SWEEP)
    else:
        valid = None  # model keys are builder kwargs: checked when a trial builds the model
    if valid is not None and field not in valid:
        owner = f"loss {loss!r}" if section == "loss" else f"section {section!r}"
        allowed = closest(field, valid) if valid else "valid: none (this loss has no hyperparameters)"
        raise ConfigError(f"{where}.{key}: {owner} has no field {field!r}; {allowed}")


def build_space(search: str | dict[str, Any] | None, loss: str, base: dict[str, Any], where: str) -> SearchSpace:
    """Resolve, parse and check a method's space against its base run config (a RunConfig dict).

    Every edge value a domain can produce (low, high, each choice) is applied onto `base` and
    validated, so a range that reaches an invalid value (epsilon = 1.5, lr = 0) fails here, naming the
    key, the domain and what the config allows, instead of erroring trials mid-sweep.
    """
    space: SearchSpace = {}
    for key, raw in resolve(search, loss).items():
        key = str(key)
        _check_key(key, loss, where)
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{where}.{key}: expected a domain mapping such as {{type: loguniform, low: 0.01, high: 0.5}}, "
                f"got {raw!r}; fixed values belong in the method's hyperparameters or the base config"
            )
        kind = raw.get("type")
        if kind not in DOMAIN_TYPES:
            raise ConfigError(f"{where}.{key}.type: unknown domain type {kind!r}; {closest(str(kind), DOMAIN_TYPES)}")
        try:
            domain = parse_domain(raw)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"{where}.{key}")) from None
        for value in domain.edges():
            try:
                build_run_config(apply_params(base, {key: value}), source=f"{where}.{key} = {value!r}")
            except ConfigError as err:
                raise ConfigError(f"{where}.{key}: {domain.describe()} can sample {value!r}, which is invalid:\n{err}")
        space[key] = domain
    return space


def to_tune(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune's param_space for a validated space (flat: Ray writes these keys to params.json)."""
    return {key: domain.to_tune() for key, domain in space.items()}


def to_optuna(space: SearchSpace) -> dict[str, Any]:
    """Optuna's distributions for a validated space: what every study's sampler and the analysis search over."""
    return {key: domain.to_optuna() for key, domain in space.items()}


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """`base` (a RunConfig dict) with each dotted `params` key set; the caller validates the result."""
    out = dict(base)
    for key, value in params.items():
        if dotted.SEP not in str(key):
            raise ConfigError(f"trial parameter {key!r} is not a dotted RunConfig path such as 'optim.lr'")
        try:
            dotted.set_path(out, key, value)
        except dotted.PathConflict as exc:
            raise ConfigError(f"trial parameter {key!r}: {exc.part!r} holds a value, not a section") from None
    return out
