"""Read a sweep's raw trial files directly (independently of proselflc.analysis) for test assertions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def results(trial_dir: Path) -> list[dict[str, Any]]:
    """The JSON rows of a trial's result.json, skipping a line torn by a kill."""
    path = Path(trial_dir) / "result.json"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def trial_dirs(experiment: Path) -> list[Path]:
    """Trial directories of a Ray Tune experiment dir (those holding params.json)."""
    return sorted(p for p in Path(experiment).glob("*") if p.is_dir() and (p / "params.json").exists())


def trial_results(experiment: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(params, reported rows) of every trial of an experiment dir."""
    return [(json.loads((d / "params.json").read_text()), results(d)) for d in trial_dirs(experiment)]


def final_trial_dirs(sweep_dir: Path, study: str) -> list[Path]:
    """The final re-runs of `study`: trial dirs of the sweep's shared `final/` experiment that name it."""
    return [
        d
        for d in trial_dirs(Path(sweep_dir) / "final")
        if json.loads((d / "params.json").read_text())["final_run"]["study"] == study
    ]
