"""Read a sweep directory written by `proselflc tune` into one tidy DataFrame, offline.

Nothing here imports Ray: a sweep copied off a cluster (or half-written by a killed driver) must
still load, so the files are read as plain JSON/CSV and every oddity becomes a warning, not a crash.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from proselflc import dotted, safe_yaml, storage
from proselflc import sweep_contract as contract
from proselflc.errors import ConfigError, shown
from proselflc.ray_compat import RESULT_BOOKKEEPING_KEYS
from proselflc.sweep_contract import LEGACY_FINAL_RUN, ONE_TUNER_VERSION, PHASE, STUDY, Manifest

#: Columns that identify one study (one table cell): what `best_configs` groups by.
GROUP_KEYS = ["dataset", "model", "noise_kind", "noise_rate", "method"]
#: Columns that identify one trial inside a sweep.
TRIAL_KEYS = ["study", "phase", "trial_id"]
STATUSES = ("completed", "stopped", "errored", "diverged", "pending")
PHASES = ("search", "final")

_TRIAL_FILES = ("params.json", "result.json", "progress.csv", "error.txt")


def read_manifest(sweep_dir: str | Path) -> Manifest:
    """Parse `<sweep>/manifest.json` (the sweep contract's model), naming the file and the bad field."""
    return contract.read_manifest(sweep_dir)


def load_sweep(path: str | Path) -> pd.DataFrame:
    """One tidy row per (study, phase, trial, epoch) of the sweep at `path` (a directory, or a URI such as
    s3://bucket/prefix/<sweep>, whose results are read through pyarrow as Ray Tune wrote them).

    Columns: sweep, study, the GROUP_KEYS, phase ("search" or "final": the final-seed re-runs),
    trial_id, trial_dir, trial_order (a search trial's place in its study's creation order, which
    breaks ties in selection as `proselflc tune` does; NaN where unknown), status (completed /
    stopped early by the scheduler / errored / diverged / pending),
    max_epochs (the epochs a full run of the trial has), seed, epoch, every reported metric,
    and one column per sampled hyperparameter under its dotted config path ("loss.exp_base").
    Dotted column names are hyperparameters, plain ones are not. A trial that reported nothing
    keeps one row with epoch NaN so that its status still counts.
    Where the manifest lists a study's trial directories (sweeps of this version), only those count:
    a trial Ray started but the study never dealt (a killed driver's leftover) is not the study's.
    """
    with storage.local_copy(path) as root:
        return _load_local(root)


def _load_local(root: Path) -> pd.DataFrame:
    manifest = read_manifest(root)
    frames: list[pd.DataFrame] = []
    experiments: dict[Path, list[_Trial]] = {}
    val_correct: dict[str, str] = {}  # trial_dir -> its stored last-epoch validation correctness (text)
    for study in manifest.studies:
        for phase, rel, listed in (
            ("search", study.search_dir, study.trial_order),
            ("final", study.final_dir, study.final_trials),
        ):
            if not rel or not (root / rel).is_dir():
                continue
            exp_dir = root / rel
            if exp_dir not in experiments:  # an experiment shared by many studies is read once
                experiments[exp_dir] = [_load_trial(d, manifest.max_t) for d in _trial_dirs(exp_dir)]
            order = {name: i for i, name in enumerate(study.trial_order)} if phase == "search" else {}
            for trial in experiments[exp_dir]:
                if trial.study not in (None, study.study) or trial.phase not in (None, phase):
                    continue
                if manifest.version >= ONE_TUNER_VERSION and trial.path.name not in listed:
                    continue
                frame = trial.frame.copy()
                if phase == "search" and (trial.path / contract.VAL_CORRECT_FILE).is_file():
                    val_correct[str(trial.path.relative_to(root))] = contract.read_val_correct(trial.path) or ""
                frame.insert(0, "trial_order", order.get(trial.path.name, math.nan))
                frame.insert(0, "trial_dir", str(trial.path.relative_to(root)))
                frame.insert(0, "phase", phase)
                for col in reversed(GROUP_KEYS):
                    frame.insert(0, col, getattr(study, col))
                frame.insert(0, "study", study.study)
                frame.insert(0, "sweep", manifest.sweep)
                frames.append(frame)
    if not frames:
        columns = [
            "sweep",
            "study",
            *GROUP_KEYS,
            "phase",
            "trial_dir",
            "trial_id",
            "status",
            "max_epochs",
            "epoch",
        ]
        df = pd.DataFrame(columns=columns)
    else:
        df = pd.concat(frames, ignore_index=True, sort=False)
        df = df[_column_order(df.columns)]
        df["noise_rate"] = df["noise_rate"].astype(float)
    df.attrs.update(
        sweep=manifest.sweep,
        metric=manifest.metric,
        mode=manifest.mode,
        max_t=manifest.max_t,
        selection_epoch=manifest.selection_epoch,
        search_spaces=read_search_spaces(root),
        val_correct=val_correct,
    )
    return df


def read_search_spaces(sweep_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{method: {dotted param: domain spec}} from the resolved sweep.yaml; {} when it is absent or unreadable.

    Specs are the YAML domain mappings (`{type: loguniform, low: .., high: ..}`); the importance code
    turns them into Optuna distributions and falls back to the sampled values for anything else.
    """
    path = Path(sweep_dir) / "sweep.yaml"
    if not path.is_file():
        return {}
    try:
        raw = safe_yaml.read_mapping(path)
    except ValueError as exc:
        warnings.warn(
            f"{path}: not valid YAML ({exc}); inferring search spaces from the trials",
            RuntimeWarning,
            stacklevel=3,
        )
        return {}
    methods = raw.get("methods") if isinstance(raw, dict) else None
    if isinstance(methods, dict):
        methods = [{"name": name, **(spec or {})} for name, spec in methods.items()]
    spaces: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods if isinstance(methods, list) else []:
        search = method.get("search") if isinstance(method, dict) else None
        if isinstance(search, dict):
            spaces[str(method.get("name"))] = {
                k: v for k, v in search.items() if isinstance(v, dict) and "type" in v
            }
    return spaces


def hyperparameter_columns(df: pd.DataFrame) -> list[str]:
    """The sampled-hyperparameter columns (dotted config paths) of a `load_sweep` frame."""
    return [c for c in df.columns if "." in c]


def _trial_dirs(exp_dir: Path) -> list[Path]:
    return sorted(p for p in exp_dir.iterdir() if p.is_dir() and any((p / f).exists() for f in _TRIAL_FILES))


@dataclass(frozen=True)
class _Trial:
    """A trial directory as read: the study and phase its config names (None: not named), its rows."""

    path: Path
    study: str | None
    phase: str | None
    frame: pd.DataFrame


def _load_trial(trial_dir: Path, max_t: int) -> _Trial:
    results = _read_results(trial_dir)
    params = _read_params(trial_dir, results)
    study = params.pop(STUDY, None)
    phase = params.pop(PHASE, None)
    trial_id = next((str(r["trial_id"]) for r in results if r.get("trial_id")), trial_dir.name)
    rows = _dedupe_epochs(_numbered(trial_dir, [_metrics(r) for r in results]))
    max_epochs = int(params.get("train.epochs") or max_t)
    status = _status(rows, max_epochs, _failed_last(trial_dir, results))
    frame = pd.DataFrame(rows) if rows else pd.DataFrame({"epoch": [math.nan]})
    frame.insert(0, "seed", params.get("train.seed"))
    frame.insert(0, "max_epochs", max_epochs)
    frame.insert(0, "status", status)
    frame.insert(0, "trial_id", trial_id)
    for name, value in params.items():
        frame[name] = [value] * len(frame)
    return _Trial(trial_dir, None if study is None else str(study), None if phase is None else str(phase), frame)


def _read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """result.json lines, skipping (with a warning) any that a crash left half-written."""
    path = trial_dir / "result.json"
    if not path.is_file():
        return _read_progress(trial_dir)
    out: list[dict[str, Any]] = []
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            where = "truncated last line" if number == len(lines) else f"unreadable line {number}"
            warnings.warn(f"{path}: skipping {where} (a partial write)", RuntimeWarning, stacklevel=4)
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _read_progress(trial_dir: Path) -> list[dict[str, Any]]:
    """progress.csv as a fallback when result.json is missing (e.g. only the CSV was synced)."""
    path = trial_dir / "progress.csv"
    if not path.is_file():
        return []
    try:
        table = pd.read_csv(path, on_bad_lines="warn")
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        warnings.warn(f"{path}: unreadable ({exc}); trial has no results", RuntimeWarning, stacklevel=5)
        return []
    records = table.to_dict("records")
    for record in records:
        if isinstance(record.get("diverged"), str):
            record["diverged"] = record["diverged"].strip().lower() == "true"
    return records


def _read_params(trial_dir: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    path = trial_dir / "params.json"
    raw: Any = None
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError:
            warnings.warn(
                f"{path}: not valid JSON; using the config recorded in result.json",
                RuntimeWarning,
                stacklevel=4,
            )
    if not isinstance(raw, dict):
        raw = next((r["config"] for r in results if isinstance(r.get("config"), dict)), {})
    if isinstance(raw.get(LEGACY_FINAL_RUN), dict):  # an earlier version's final re-run: rewritten by migrate
        sweep_dir = trial_dir.parent.parent
        raise ConfigError(
            f"{str(path)!r} holds a final re-run in the earlier form ({{{LEGACY_FINAL_RUN}: {{...}}}}); run "
            f"`proselflc migrate {sweep_dir}` to rewrite the sweep's final re-runs, then load it again"
        )
    # Nested config dicts to dotted keys, so either layout reads into the same columns; lists as JSON cells.
    return {k: json.dumps(v) if isinstance(v, list | tuple) else v for k, v in dotted.flatten(raw).items()}


def _metrics(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in record.items() if k not in RESULT_BOOKKEEPING_KEYS and "/" not in k and _is_scalar(v)}
    if "epoch" not in row and "training_iteration" in record:
        row["epoch"] = record["training_iteration"]
    return row


def _numbered(trial_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose epoch is a finite number (or absent), skipping others with a warning naming the trial."""
    def ok(epoch: Any) -> bool:
        return epoch is None or (isinstance(epoch, int | float) and not isinstance(epoch, bool) and math.isfinite(epoch))

    bad = [row["epoch"] for row in rows if not ok(row.get("epoch"))]
    if bad:
        warnings.warn(
            f"{trial_dir}: skipping {len(bad)} report(s) whose epoch is not a finite number (e.g. {shown(bad[0])}); "
            "the file was changed or damaged", RuntimeWarning, stacklevel=4,
        )
    return [row for row in rows if ok(row.get("epoch"))]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _dedupe_epochs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the last report of each epoch: a trial restored from a checkpoint re-reports epochs."""
    by_epoch: dict[Any, dict[str, Any]] = {}
    for row in rows:
        by_epoch[row.get("epoch")] = row
    return sorted(by_epoch.values(), key=lambda r: (r.get("epoch") is None, r.get("epoch") or 0))


#: Ray 2.60's line per failure in a trial's error.txt (`Trial.handle_error`, appended, local time as `date_str()`).
_FAILURE = re.compile(r"^Failure # \d+ \(occurred at (\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})\)", re.MULTILINE)


def _failed_last(trial_dir: Path, results: list[dict[str, Any]]) -> bool:
    """Whether the trial's last attempt failed: error.txt records a failure and no result came after it.

    Ray appends every failure to error.txt and never removes it, so a trial retried after a lost worker or a
    full disk (`max_failures`, `--resume`) keeps the file although it then ran to its end. Its results after
    the failure decide: Ray stamps each result's `date` in the same local-time format as the failure line,
    so the two compare as text. A failure without a readable time, or results without dates, count as failed.
    """
    path = trial_dir / "error.txt"
    if not path.exists():
        return False
    failures = _FAILURE.findall(path.read_text(errors="replace"))
    dates = [str(r["date"]) for r in results if isinstance(r.get("date"), str)]
    return not (failures and dates and max(dates) > failures[-1])


def _status(rows: list[dict[str, Any]], max_epochs: int, failed_last: bool) -> str:
    if failed_last:
        return "errored"
    if not rows:
        return "pending"
    last = rows[-1]
    if bool(last.get("diverged")):
        return "diverged"
    epoch = last.get("epoch")
    if epoch is not None and max_epochs and float(epoch) < max_epochs:
        return "stopped"
    return "completed"


def _column_order(columns: pd.Index) -> list[str]:
    head = [
        "sweep",
        "study",
        *GROUP_KEYS,
        "phase",
        "trial_id",
        "trial_dir",
        "trial_order",
        "status",
        "max_epochs",
        "seed",
        "epoch",
    ]
    metrics = [c for c in columns if c not in head and "." not in c]
    params = sorted(c for c in columns if "." in c)
    return [c for c in head if c in columns] + metrics + params
