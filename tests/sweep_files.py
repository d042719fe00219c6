"""Read a sweep's raw trial files directly (independently of proselflc.analysis) for test assertions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The sweep's one Ray Tune experiment, and the keys every trial's config carries (the sweep contract).
EXPERIMENT = "trials"
ROUTING = ("study", "phase")


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


def _params(trial_dir: Path) -> dict[str, Any] | None:
    """params.json if whole: Ray (re)writes it while a sweep runs, so a test polling the directory can read it
    empty or half written; such a trial counts once the write is done (final counts still catch a loss)."""
    try:
        raw = json.loads((Path(trial_dir) / "params.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return raw if isinstance(raw, dict) else None


def trial_dirs(experiment: Path) -> list[Path]:
    """Trial directories of a Ray Tune experiment dir (those holding a whole params.json)."""
    return sorted(p for p in Path(experiment).glob("*") if p.is_dir() and _params(p) is not None)


def config(trial_dir: Path) -> dict[str, Any]:
    return json.loads((Path(trial_dir) / "params.json").read_text())


def study_trial_dirs(sweep_dir: Path, study: str, phase: str = "search") -> list[Path]:
    """The trial dirs of one study's search (or final re-runs) in the sweep's shared experiment."""
    found = []
    for d in sorted(p for p in (Path(sweep_dir) / EXPERIMENT).glob("*") if p.is_dir()):
        params = _params(d)
        if params is not None and params.get("study") == study and params.get("phase") == phase:
            found.append(d)
    return found


def study_trials(sweep_dir: Path, study: str, phase: str = "search") -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(params without the routing keys, reported rows) of one study's search or final trials."""
    return [
        ({k: v for k, v in config(d).items() if k not in ROUTING}, results(d))
        for d in study_trial_dirs(sweep_dir, study, phase)
    ]


def final_trial_dirs(sweep_dir: Path, study: str) -> list[Path]:
    """The final re-runs of `study`."""
    return study_trial_dirs(sweep_dir, study, "final")


def results_cells(summary_text: str) -> dict[str, dict[str, str]]:
    """The cells of the results table (the first Markdown table) of `summary()`: {noise rate: {column: cell}}."""
    lines = summary_text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):  # the table ends at its first non-table line
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]  # rows[1]: the |---| separator
    return {row[header.index("noise rate")]: dict(zip(header, row, strict=True)) for row in body}
