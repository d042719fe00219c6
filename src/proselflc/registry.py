"""One registry shape for every family the config names: losses, models, datasets and noise kinds.

A family owns a `Registry`; each member registers itself where it is defined, with a decorator:

    @LOSSES.register("gce", params={"q": Param(0.7, low=0.0, high=1.0, low_open=True)})
    class GCE(Loss): ...

The registry then knows the member's name, its options (from `params`, or read off the target's
signature for members that declare none) and their defaults, in one place, and gives every family
the same errors: the field, the value, what is allowed, and the closest valid name. A family whose
members live in the modules of a package (`package=`) imports those modules the first time it is
asked about its members, so adding a member is adding one module. This module imports nothing from
proselflc but `errors`, so any layer can use it without an import loop.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import numbers
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from proselflc.errors import ConfigError, closest, one_of

T = TypeVar("T", bound=Callable[..., Any])


class _Required:
    """The default of an option that has none: the config must give it."""

    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """One option of a registered member: default, allowed range or choices, and the argument it feeds.

    `default` is REQUIRED for an option the config must set. Numeric options (a range, or a number as
    default) refuse booleans and strings; `choices` lists the allowed values; `arg` names the target's
    argument when it differs from the YAML key (`lambda` -> `lam`); `help` says what the option holds
    (in the generated reference, and in the error for a missing required one).
    """

    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    arg: str | None = None
    help: str = ""

    @property
    def numeric(self) -> bool:
        default_is_number = isinstance(self.default, numbers.Real) and not isinstance(self.default, bool)
        return self.low is not None or self.high is not None or default_is_number

    def allowed(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def validate(self, where: str, value: Any) -> Any:
        """`value` if allowed, else a ConfigError starting with `where` (e.g. "loss.q = 2 (loss 'gce')")."""
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(f"{where} is not a valid choice; {closest(str(value), [str(c) for c in self.choices])}")
            return value
        if isinstance(self.default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        if not self.numeric:
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            ranged = self.low is not None or self.high is not None
            raise ConfigError(f"{where} must be a number {f'in {self.allowed()}' if ranged else f'(default {self.default!r})'}")
        number = float(value)
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        too_high = self.high is not None and (number >= self.high if self.high_open else number > self.high)
        if math.isnan(number) or too_low or too_high:
            raise ConfigError(f"{where} is outside the allowed range {self.allowed()}")
        if isinstance(self.default, int) and not isinstance(self.default, bool):
            if number != int(number):
                raise ConfigError(f"{where} must be a whole number (default {self.default})")
            return int(value)  # 64.0 from YAML reaches the target as 64, the type of its default
        return value


@dataclass(frozen=True)
class Entry:
    """A registered member: its target (class or function), its options and what the family records about it."""

    name: str
    target: Callable[..., Any]
    params: dict[str, Param]
    info: dict[str, Any] = field(default_factory=dict)
    open_options: bool = False

    def defaults(self) -> dict[str, Any]:
        return {key: p.default for key, p in self.params.items() if p.default is not REQUIRED}


class Registry:
    """Names -> targets of one family, with their options checked the same way for every family.

    `what` names a member in messages ("loss", "model"); `section` is the config section whose keys
    are the options ("loss" -> `loss.epsilon`); `option` is the word for an option ("hyperparameter");
    `positional` are target arguments the caller supplies (e.g. `num_classes`), never options;
    `package` is where members register themselves (imported on first use).
    """

    def __init__(
        self,
        what: str,
        section: str,
        *,
        option: str = "option",
        positional: tuple[str, ...] = (),
        package: str | None = None,
    ) -> None:
        self.what = what
        self.section = section
        self.option = option
        self.positional = positional
        self.package = package
        self._entries: dict[str, Entry] = {}
        self._discovered = package is None
        self._lock = threading.RLock()

    def register(self, name: str, *, params: Mapping[str, Param] | None = None, **info: Any) -> Callable[[T], T]:
        """Decorator: register the decorated class or function as `name`.

        Options come from the target's signature (keyword arguments after `positional`, with their
        defaults); `params` refines them (ranges, choices, a YAML key other than the argument's name).
        `info` holds what the family records about a member (e.g. a dataset's `needs_root`).
        """

        def add(target: T) -> T:
            known = self._entries.get(name)
            if known is not None and _qualname(known.target) != _qualname(target):
                raise ValueError(f"{self.what} {name!r} is already registered by {_qualname(known.target)}")
            options, open_options = self._options(name, target, dict(params or {}))
            self._entries[name] = Entry(name, target, options, dict(info), open_options)
            return target

        return add

    def unregister(self, name: str) -> None:
        """Remove `name` (a member registered for a while, e.g. by a test)."""
        self.entry(name)
        del self._entries[name]

    @property
    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        self._discover()
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def entry(self, name: str) -> Entry:
        """The member `name`, or a ConfigError listing the valid names and the closest one."""
        return self._entries[one_of(name, self.names, self.what)]

    def defaults(self, name: str) -> dict[str, Any]:
        """{option: default} of member `name` (YAML keys), without the required ones."""
        return self.entry(name).defaults()

    def check(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The target's keyword arguments for `options`: every key and value checked, defaults filled in."""
        entry = self.entry(name)
        if entry.open_options:
            return dict(options)
        for key in options:
            if key not in entry.params:
                allowed = ", ".join(sorted(entry.params)) or "(none)"
                match = difflib.get_close_matches(str(key), list(entry.params), n=1)
                hint = f" (did you mean {match[0]!r}?)" if match else ""
                raise ConfigError(
                    f"{self.section}.{key}: {self.what} {name!r} has no {self.option} {key!r}; allowed: {allowed}{hint}"
                )
        kwargs = {}
        for key, param in entry.params.items():
            if key in options:
                value = param.validate(f"{self.section}.{key} = {options[key]!r} ({self.what} {name!r})", options[key])
            elif param.default is REQUIRED:
                needs = f" ({param.help})" if param.help else ""
                raise ConfigError(f"{self.what} {name!r} needs {self.section}.{key}{needs}")
            else:
                value = param.default
            kwargs[param.arg or key] = value
        return kwargs

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """target(*args, **checked options): `args` are the `positional` arguments the caller supplies."""
        kwargs = self.check(name, options)
        return self._entries[name].target(*args, **kwargs)

    def _options(self, name: str, target: Callable[..., Any], refine: dict[str, Param]) -> tuple[dict[str, Param], bool]:
        """Options read off the target's signature, refined by `refine`; (options, accepts any keyword)."""
        by_arg = {p.arg or key: key for key, p in refine.items()}
        options: dict[str, Param] = {}
        open_options = False
        for arg, parameter in inspect.signature(target).parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                open_options = True
                continue
            if arg in self.positional or parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            key = by_arg.get(arg, arg)
            spec = refine.pop(key, Param())
            default = spec.default if parameter.default is inspect.Parameter.empty else parameter.default
            if spec.default is not REQUIRED and parameter.default is not inspect.Parameter.empty:
                raise ValueError(
                    f"{self.what} {name!r}: the default of {key!r} is written twice (in params and in the signature)"
                )
            options[key] = replace(spec, default=default, arg=arg if arg != key else None)
        if refine:
            raise ValueError(f"{self.what} {name!r}: params {sorted(refine)} are not arguments of {_qualname(target)}")
        return options, open_options

    def _discover(self) -> None:
        """Import every module of `package` once, so that their `register` decorators have run."""
        if self._discovered:
            return
        with self._lock:
            if self._discovered:
                return
            package = importlib.import_module(self.package or "")
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            self._discovered = True


def _qualname(target: Callable[..., Any]) -> str:
    return f"{target.__module__}.{target.__qualname__}"
