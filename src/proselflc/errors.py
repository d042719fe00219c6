"""The project's error type and the "did you mean" helpers every registry and config section shares.

This module imports nothing from proselflc, so any module (config, the registries, tuning, analysis)
can raise the same errors without importing another layer, and without an import loop.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A configuration that cannot be run, with a message naming the field, the value and what is allowed.

    A ValueError, so pydantic validators that raise it report it as a field error.
    """


#: Longest value an error message repeats: a 150,000-element list is named, not echoed.
MAX_SHOWN = 200


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """`repr(value)` for an error message, cut to `limit` characters (a list also says how many items)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} items: " if isinstance(value, list | tuple | dict | set) else ""
    return f"{size}{text[:limit]}... ({len(text) - limit} more characters)"


def closest(name: str, valid: Iterable[str]) -> str:
    """The 'valid: a, b (did you mean ...?)' suffix shared by every unknown-name error."""
    names = [str(v) for v in valid]
    match = difflib.get_close_matches(str(name), names, n=1)
    hint = f" (did you mean {match[0]!r}?)" if match else ""
    return f"valid: {', '.join(sorted(names))}{hint}"


def one_of(value: str, valid: Iterable[str], what: str) -> str:
    """`value` if it is in `valid`, else a ConfigError naming it and listing the valid names."""
    names = tuple(valid)
    if value not in names:
        raise ConfigError(f"unknown {what} {value!r}; {closest(str(value), names)}")
    return value
