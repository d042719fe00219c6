"""manifest.json: the sweep's table of contents and progress, read offline by the analysis.

It is rewritten atomically after every study transition (pending -> searched -> finished), so an
interrupted sweep records exactly what `--resume` still has to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from proselflc.config import ConfigError
from proselflc.io import atomic_write_text

MANIFEST = "manifest.json"
SWEEP_FILE = "sweep.yaml"
STATUSES = ("pending", "searched", "finished")


def read_manifest(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist: {str(sweep_dir)!r} is not a proselflc sweep directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON: {exc}") from None


def write_manifest(sweep_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(sweep_dir) / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def study_entry(manifest: dict[str, Any], study: str) -> dict[str, Any]:
    for entry in manifest["studies"]:
        if entry["study"] == study:
            return entry
    raise ConfigError(f"study {study!r} is not in the manifest; it lists {[e['study'] for e in manifest['studies']]}")
