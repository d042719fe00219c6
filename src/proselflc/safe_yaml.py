"""The one YAML loader for config files: safe tags only, no aliases, no duplicate keys, bounded size.

`yaml.safe_load` runs no code, but it still lets a 1 kB file of nested aliases ("billion laughs")
expand into gigabytes once the config is validated, and it silently keeps the last of two equal
keys. Config files are small, hand-written mappings, so this loader refuses both, and anything over
`MAX_CONFIG_BYTES`, before a value reaches pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node

#: Largest config file read (1 MiB: a 100 x 100 noise matrix is about 60 kB).
MAX_CONFIG_BYTES = 1 << 20


class YamlRefused(ValueError):
    """A YAML document that is not a plain config: the message names the source, the line and why."""


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (so nothing is ever shared or expanded) and duplicate keys."""

    source = "config"

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise YamlRefused(
                f"{self.source}, line {event.start_mark.line + 1}: YAML alias '*{event.anchor}' is not allowed "
                "in config files (aliases can expand a small file into gigabytes); write the value out instead"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it below
            if first != line:
                raise YamlRefused(
                    f"{self.source}, line {line}: duplicate key {key!r} (first set on line {first}); "
                    "keep one of the two"
                )
        return super().construct_mapping(node, deep=deep)


class _NoAliasDumper(yaml.SafeDumper):
    """SafeDumper that writes a shared object out again instead of as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_text(data: Any) -> str:
    """YAML that this module's loader reads back: keys in insertion order, never an alias."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


def load_text(text: str, source: str = "config") -> Any:
    """Parse one YAML document with the config loader; YamlRefused (a ValueError) on any problem."""
    try:
        loader = _ConfigLoader(text)  # the reader refuses control characters (a NUL byte) already here
    except yaml.YAMLError as exc:
        raise YamlRefused(f"{source} is not a text config: {' '.join(str(exc).split())}") from None
    loader.source = source
    try:
        return loader.get_single_data()
    except YamlRefused:
        raise
    except yaml.YAMLError as exc:
        raise YamlRefused(f"{source} is not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlRefused(
            f"{source} nests lists or mappings too deeply to be a config (thousands of levels); is this the right file?"
        ) from None
    finally:
        loader.dispose()


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A config file's top-level mapping: exists, at most MAX_CONFIG_BYTES, UTF-8, non-empty, a mapping."""
    path = Path(path)
    name = repr(str(path))
    if path.is_dir():
        raise YamlRefused(f"config file {name} is a directory; name a YAML file (e.g. configs/digits.yaml)")
    if not path.is_file():
        raise YamlRefused(f"config file {name} does not exist")
    with path.open("rb") as fh:
        raw = fh.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise YamlRefused(
            f"config file {name} is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a short mapping "
            "of sections (is this the right file?)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRefused(f"config file {name} is not UTF-8 text (byte {exc.start}); is this the right file?") from None
    data = load_text(text, source=f"config file {name}")
    if data is None:
        raise YamlRefused(
            f"config file {name} is empty; write at least one section (e.g. 'data: {{name: digits}}') "
            "so that a wrong or truncated file is not run with every default"
        )
    if not isinstance(data, dict):
        raise YamlRefused(f"config file {name} must hold a mapping of sections, got {type(data).__name__}")
    return data
