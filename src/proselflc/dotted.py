"""Dotted keys (`optim.lr`) and nested dicts (`{"optim": {"lr": ...}}`), one way each, for every layer.

The CLI's `--set`, a sweep's `overrides`, a trial's sampled parameters, the API's keyword overrides,
the resume check and the analysis's columns all name a config field by its dotted path; they convert
with the functions here, so a path means the same thing everywhere. Imports nothing from proselflc.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

SEP = "."


class PathConflict(ValueError):
    """A dotted path runs through a key that holds a value, not a mapping (`a=1` then `a.b=2`)."""

    def __init__(self, key: str, part: str) -> None:
        super().__init__(f"{key!r}: {part!r} is already set to a value")
        self.key = key
        self.part = part


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to `{dotted path: leaf}`; an empty mapping has no leaf and adds no key."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}{SEP}"))
        else:
            out[name] = value
    return out


def set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `value` at dotted `key` in `tree`, creating mappings on the way.

    The mappings on the way are copied before they are changed, so a caller's nested dicts shared with
    `tree` (a base config) are never modified; `tree` itself is. Raises PathConflict when a part on the
    way holds a value that is not a mapping.
    """
    *parents, leaf = str(key).split(SEP)
    node = tree
    for part in parents:
        child = node.get(part, {})
        if not isinstance(child, Mapping):
            raise PathConflict(str(key), part)
        node[part] = dict(child)
        node = node[part]
    node[leaf] = value


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`update` applied onto a copy of `base`, recursing where both hold a mapping (else `update` wins)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def nest(items: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping with dotted and/or nested keys as one nested dict; later keys are merged into earlier ones."""
    out: dict[str, Any] = {}
    for key, value in items.items():
        *parents, leaf = str(key).split(SEP)
        tree: dict[str, Any] = {leaf: nest(value) if isinstance(value, Mapping) else value}
        for part in reversed(parents):
            tree = {part: tree}
        out = deep_merge(out, tree)
    return out
