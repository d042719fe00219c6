"""Hand-built sweep directories in the documented format, and the loader's behaviour on them.

`write_sweep` writes what `proselflc tune` + Ray Tune write: manifest.json, sweep.yaml and Ray
experiment dirs whose trial dirs hold params.json, result.json (one JSON object per epoch, with
Ray's bookkeeping keys), progress.csv and error.txt, plus the extra files Ray leaves beside them.
Other analysis tests import it from here.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from proselflc.analysis import load_sweep, read_manifest

DEFAULT_METRICS = (
    "lr",
    "train_loss",
    "val_accuracy",
    "test_accuracy",
    "test_loss",
    "noisy_fit",
    "noisy_corrected",
    "clean_fit",
    "mean_epsilon",
)


@dataclass
class Trial:
    """One Ray trial: hyperparameters and per-epoch curves (missing metrics get simple defaults)."""

    params: dict[str, Any]
    curves: dict[str, list[float]]
    error: bool = False
    diverged: bool = False


@dataclass
class Study:
    kind: str
    rate: float
    method: str
    trials: list[Trial]
    finals: list[Trial] = field(default_factory=list)
    dataset: str = "digits"
    model: str = "mlp"


def write_sweep(
    root: Path,
    studies: list[Study],
    name: str = "demo",
    max_t: int = 4,
    spaces: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> Path:
    """Write a sweep directory in the documented format under root/name and return it.

    `spaces` ({method: {dotted param: domain}}) is recorded in sweep.yaml as the resolved sweep does.
    """
    spaces = spaces or {}
    sweep = root / name
    sweep.mkdir(parents=True)
    entries = []
    for study in studies:
        rel = f"{study.kind}-{study.rate:g}/{study.method}"
        entries.append(
            {
                "study": rel,
                "dataset": study.dataset,
                "model": study.model,
                "noise_kind": study.kind,
                "noise_rate": study.rate,
                "method": study.method,
                "search_dir": f"{rel}/search",
                "final_dir": f"{rel}/final" if study.finals else None,
                "status": "finished" if study.finals else "searched",
            }
        )
        _write_experiment(sweep / rel / "search", study.trials)
        if study.finals:
            _write_experiment(sweep / rel / "final", study.finals)
    manifest = {"sweep": name, "metric": "val_accuracy", "mode": "max", "max_t": max_t, "studies": entries}
    (sweep / "manifest.json").write_text(json.dumps(manifest, indent=2))
    methods = [
        {"name": m, "loss": m, "search": spaces.get(m, {})} for m in dict.fromkeys(s.method for s in studies)
    ]
    resolved = {"name": name, "metric": "val_accuracy", "mode": "max", "methods": methods}
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    return sweep


def _write_experiment(exp: Path, trials: list[Trial]) -> None:
    exp.mkdir(parents=True)
    (exp / ".validate_storage_marker").write_text("")
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [], "stats": {}})
    )
    (exp / "basic-variant-state-2026-01-01_00-00-00.json").write_text("{}")
    (exp / "tuner.pkl").write_bytes(b"\x80\x05N.")
    for index, trial in enumerate(trials):
        trial_id = f"ab12c_{index:05d}"
        tdir = exp / f"train_{trial_id}_{index}_lr={trial.params.get('optim.lr', 0):.4f}_2026-01-01_00-00-00"
        tdir.mkdir()
        (tdir / "params.json").write_text(json.dumps(trial.params, indent=2))
        (tdir / "params.pkl").write_bytes(b"\x80\x05N.")
        (tdir / "events.out.tfevents.0.host").write_bytes(b"")
        records = _records(trial, trial_id)
        with (tdir / "result.json").open("w") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        if records:
            flat = [{k: v for k, v in r.items() if k != "config"} for r in records]
            with (tdir / "progress.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(flat[0]))
                writer.writeheader()
                writer.writerows(flat)
        if trial.error:
            (tdir / "error.txt").write_text("Traceback (most recent call last):\nRuntimeError: boom\n")


def _records(trial: Trial, trial_id: str) -> list[dict[str, Any]]:
    epochs = len(next(iter(trial.curves.values()), []))
    out = []
    for i in range(epochs):
        metrics: dict[str, Any] = {"epoch": i + 1}
        for key in DEFAULT_METRICS:
            metrics[key] = trial.curves.get(key, [0.5] * epochs)[i]
        metrics["diverged"] = trial.diverged and i == epochs - 1
        metrics.update(
            {
                "timestamp": 1795576438 + i,
                "checkpoint_dir_name": f"checkpoint_{i:06d}",
                "done": False,
                "training_iteration": i + 1,
                "trial_id": trial_id,
                "date": "2026-01-01_00-00-00",
                "time_this_iter_s": 0.5,
                "time_total_s": 0.5 * (i + 1),
                "pid": 1,
                "hostname": "host",
                "node_ip": "127.0.0.1",
                "config": trial.params,
                "time_since_restore": 0.5 * (i + 1),
                "iterations_since_restore": i + 1,
            }
        )
        out.append(metrics)
    return out


def small_sweep(root: Path) -> Path:
    """Two noise rates x two methods, with a stopped, an errored and a diverged trial and final re-runs."""

    def ce(lr: float, val: list[float], test: list[float], **kw: Any) -> Trial:
        return Trial({"optim.lr": lr, "train.seed": 0}, {"val_accuracy": val, "test_accuracy": test}, **kw)

    def pro(lr: float, base: float, mode: str, val: list[float], test: list[float], **kw: Any) -> Trial:
        params = {"optim.lr": lr, "loss.exp_base": base, "loss.trust_mode": mode, "train.seed": 0}
        curves = {
            "val_accuracy": val,
            "test_accuracy": test,
            "mean_epsilon": [0.0, 0.1, 0.2, 0.3][: len(val)],
        }
        return Trial(params, curves, **kw)

    def final(params: dict[str, Any], seed: int, last: float) -> Trial:
        return Trial(
            {**params, "train.seed": seed},
            {"val_accuracy": [0.5] * 4, "test_accuracy": [0.5, 0.6, 0.7, last]},
        )

    studies = [
        Study(
            "symmetric",
            0.2,
            "crossentropy",
            [
                ce(0.1, [0.5, 0.6, 0.7, 0.72], [0.6, 0.7, 0.8, 0.81]),
                ce(0.01, [0.4, 0.45], [0.5, 0.55]),
            ],
            finals=[final({"optim.lr": 0.1}, s, v) for s, v in ((1, 0.80), (2, 0.82))],
        ),
        Study(
            "symmetric",
            0.2,
            "proselflc",
            [
                pro(0.1, 8.0, "global", [0.6, 0.7, 0.8, 0.75], [0.7, 0.8, 0.85, 0.86]),
                pro(0.3, 16.0, "entropy", [0.3, 0.2, 0.1, 0.1], [0.3, 0.2, 0.1, 0.1], diverged=True),
                pro(0.05, 4.0, "max_p", [0.5], [0.6], error=True),
            ],
            finals=[
                final({"optim.lr": 0.1, "loss.exp_base": 8.0, "loss.trust_mode": "global"}, s, v)
                for s, v in ((1, 0.86), (2, 0.88))
            ],
        ),
        Study(
            "symmetric",
            0.4,
            "crossentropy",
            [
                ce(0.1, [0.4, 0.5, 0.45, 0.44], [0.5, 0.6, 0.55, 0.5]),
                ce(0.01, [0.3, 0.35, 0.4, 0.41], [0.4, 0.45, 0.5, 0.52]),
            ],
        ),
        Study(
            "symmetric",
            0.4,
            "proselflc",
            [
                pro(0.1, 8.0, "global", [0.5, 0.6, 0.65, 0.66], [0.6, 0.7, 0.75, 0.77]),
                pro(0.05, 4.0, "entropy", [0.4, 0.5], [0.5, 0.6]),
            ],
        ),
    ]
    spaces = {
        "proselflc": {
            "optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.5},
            "loss.exp_base": {"type": "loguniform", "low": 2.0, "high": 32.0},
            "loss.trust_mode": {"type": "choice", "values": ["global", "entropy", "max_p"]},
        }
    }
    return write_sweep(root, studies, spaces=spaces)


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return small_sweep(tmp_path)


def _trial_rows(df, study: str, phase: str = "search"):
    return df[(df["study"] == study) & (df["phase"] == phase)]


def test_one_row_per_trial_epoch_with_config_columns(sweep_dir: Path) -> None:
    df = load_sweep(sweep_dir)
    ce = _trial_rows(df, "symmetric-0.2/crossentropy")
    assert sorted(ce.groupby("trial_id")["epoch"].count().tolist()) == [2, 4]
    assert set(df["phase"]) == {"search", "final"}
    assert {"optim.lr", "loss.exp_base", "loss.trust_mode", "train.seed"} <= set(df.columns)
    assert not {"config", "pid", "hostname", "training_iteration"} & set(df.columns)
    assert df["noise_rate"].dtype == float
    assert set(df["dataset"]) == {"digits"}
    assert df.attrs["metric"] == "val_accuracy" and df.attrs["max_t"] == 4
    assert df.attrs["search_spaces"]["proselflc"]["optim.lr"]["type"] == "loguniform"
    finals = _trial_rows(df, "symmetric-0.2/proselflc", "final")
    assert sorted(finals["seed"].unique().tolist()) == [1, 2]


def test_trial_status_follows_documented_rules(sweep_dir: Path) -> None:
    df = load_sweep(sweep_dir)
    status = df.drop_duplicates(["study", "phase", "trial_id"]).set_index(["study", "phase", "trial_id"])[
        "status"
    ]
    assert status[("symmetric-0.2/crossentropy", "search", "ab12c_00000")] == "completed"
    assert status[("symmetric-0.2/crossentropy", "search", "ab12c_00001")] == "stopped"
    assert status[("symmetric-0.2/proselflc", "search", "ab12c_00001")] == "diverged"
    assert status[("symmetric-0.2/proselflc", "search", "ab12c_00002")] == "errored"
    assert set(status[status.index.get_level_values("phase") == "final"]) == {"completed"}


def test_truncated_last_line_is_skipped_with_a_warning(sweep_dir: Path) -> None:
    result = next((sweep_dir / "symmetric-0.4/crossentropy/search").glob("*_00000_*")) / "result.json"
    text = result.read_text()
    result.write_text(text + text.splitlines()[-1][:37])
    with pytest.warns(RuntimeWarning, match="truncated last line"):
        df = load_sweep(sweep_dir)
    rows = _trial_rows(df, "symmetric-0.4/crossentropy")
    assert rows[rows["trial_id"] == "ab12c_00000"]["epoch"].tolist() == [1, 2, 3, 4]


def test_missing_optional_files_and_empty_results_do_not_crash(sweep_dir: Path) -> None:
    search = sweep_dir / "symmetric-0.4/proselflc/search"
    first, second = sorted(p for p in search.iterdir() if p.is_dir())
    (first / "params.json").unlink()
    (first / "progress.csv").unlink()
    (second / "result.json").write_text("")
    (second / "progress.csv").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = load_sweep(sweep_dir)
    rows = _trial_rows(df, "symmetric-0.4/proselflc")
    first_rows = rows[rows["trial_dir"].str.endswith(first.name)]
    assert first_rows["optim.lr"].tolist() == [0.1] * 4
    empty = rows[rows["trial_dir"].str.endswith(second.name)]
    assert len(empty) == 1 and math.isnan(empty["epoch"].iloc[0]) and empty["status"].iloc[0] == "pending"


def test_progress_csv_is_the_fallback_for_a_missing_result_json(sweep_dir: Path) -> None:
    trial = next((sweep_dir / "symmetric-0.2/proselflc/search").glob("*_00001_*"))
    (trial / "result.json").unlink()
    df = load_sweep(sweep_dir)
    rows = _trial_rows(df, "symmetric-0.2/proselflc")
    diverged = rows[rows["trial_id"] == "ab12c_00001"]
    assert diverged["epoch"].tolist() == [1, 2, 3, 4]
    assert diverged["status"].iloc[0] == "diverged"


def test_restored_trial_keeps_the_last_report_of_each_epoch(sweep_dir: Path) -> None:
    result = next((sweep_dir / "symmetric-0.4/crossentropy/search").glob("*_00001_*")) / "result.json"
    lines = result.read_text().splitlines()
    again = json.loads(lines[2])
    again["val_accuracy"] = 0.99
    result.write_text("\n".join([*lines, json.dumps(again), lines[3]]) + "\n")
    rows = _trial_rows(load_sweep(sweep_dir), "symmetric-0.4/crossentropy")
    trial = rows[rows["trial_id"] == "ab12c_00001"]
    assert trial["epoch"].tolist() == [1, 2, 3, 4]
    assert trial["val_accuracy"].tolist()[2] == 0.99


def test_a_study_not_yet_run_is_skipped(sweep_dir: Path) -> None:
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    manifest["studies"].append(
        {
            **manifest["studies"][0],
            "study": "symmetric-0.6/crossentropy",
            "noise_rate": 0.6,
            "search_dir": "symmetric-0.6/crossentropy/search",
            "final_dir": None,
            "status": "pending",
        }
    )
    (sweep_dir / "manifest.json").write_text(json.dumps(manifest))
    assert 0.6 not in set(load_sweep(sweep_dir)["noise_rate"])


def test_bad_sweep_directories_name_the_problem(tmp_path: Path, sweep_dir: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_sweep(tmp_path / "nope")
    with pytest.raises(ValueError, match="manifest.json is missing"):
        load_sweep(sweep_dir / "symmetric-0.2")
    (sweep_dir / "manifest.json").write_text('{"sweep": "demo", "studies": [{"study": "x"}]}')
    with pytest.raises(ValueError, match=r"not a valid sweep manifest: studies.0.dataset: Field required.*"
                                         r"studies.0.search_dir: Field required"):
        read_manifest(sweep_dir)
    (sweep_dir / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(sweep_dir)


def test_tied_trials_go_to_the_one_the_sweep_created_first(tmp_path: Path) -> None:
    """Trial ids are random for searched trials, so a tie broken by id would change from run to run; the
    manifest's trial_order (Ray's creation order, which `proselflc tune` breaks ties by) decides instead."""
    from proselflc.analysis import best_configs

    trials = [
        Trial({"optim.lr": lr, "train.seed": 0}, {"val_accuracy": [0.5, 0.7], "test_accuracy": [0.5, test]})
        for lr, test in ((0.1, 0.80), (0.2, 0.90))
    ]
    sweep = write_sweep(tmp_path, [Study("symmetric", 0.4, "crossentropy", trials)], max_t=2)
    assert best_configs(load_sweep(sweep)).iloc[0]["optim.lr"] == 0.1  # no order recorded: the smaller id
    manifest = json.loads((sweep / "manifest.json").read_text())
    search = sweep / manifest["studies"][0]["search_dir"]
    first, second = sorted(p.name for p in search.iterdir() if (p / "params.json").exists())
    manifest["studies"][0]["trial_order"] = [second, first]  # the larger id was created first
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    df = load_sweep(sweep)
    assert sorted(df.groupby("trial_id")["trial_order"].first()) == [0, 1]
    best = best_configs(df).iloc[0]
    assert best["optim.lr"] == 0.2 and best["test_accuracy"] == 0.90


def test_a_trial_retried_after_a_failure_counts_by_its_last_attempt_not_by_its_error_txt(tmp_path: Path) -> None:
    """Ray appends each failure to error.txt and never removes it: a trial that a full disk or a lost worker
    failed once and that `--resume` / `max_failures` then ran to its end is completed, not errored."""
    curves = {"val_accuracy": [0.2, 0.3, 0.4, 0.5], "test_accuracy": [0.3, 0.4, 0.5, 0.6]}
    trials = [Trial({"optim.lr": lr, "train.seed": 0}, curves) for lr in (0.1, 0.2, 0.3)]
    sweep = write_sweep(tmp_path, [Study("symmetric", 0.4, "crossentropy", trials)])
    retried, failed, unreadable = sorted((sweep / "symmetric-0.4" / "crossentropy" / "search").glob("train_*"))
    # Every result of write_sweep is dated 2026-01-01_00-00-00, as Ray stamps them.
    (retried / "error.txt").write_text(
        "Failure # 1 (occurred at 2025-12-31_23-59-58)\nOSError: [Errno 28] No space left on device\n"
    )
    (failed / "error.txt").write_text(
        "Failure # 1 (occurred at 2025-12-31_23-59-58)\nOSError: [Errno 28]\n"
        "Failure # 2 (occurred at 2026-01-01_00-00-00)\nRayActorError: the actor died\n"
    )
    (unreadable / "error.txt").write_text("RuntimeError: boom\n")

    df = load_sweep(sweep)
    status = {Path(d).name: s for d, s in zip(df["trial_dir"], df["status"], strict=True)}
    assert status[retried.name] == "completed"
    assert status[failed.name] == "errored"  # its last failure is not followed by a result
    assert status[unreadable.name] == "errored"  # no failure time to compare: counted as failed, as before
