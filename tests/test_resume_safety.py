"""No lost result goes unnoticed and `--resume` never deletes one.

- `tiny_sweep` run again on a tmpfs too small for it: the sweep stops with a "no space left" error (exit 2), the
  report is PARTIAL, and `--resume` once the tmpfs is enlarged ends with the table of the uninterrupted run.
- Copies of the finished `tiny_sweep` made as a careless copy would leave them (without Ray's `tuner.pkl`, without
  any `.pkl`, without `manifest.json`) either resume in place, every trial kept byte for byte, or are refused naming
  what is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TINY_SWEEP
from proselflc.analysis import summary
from proselflc.analysis.progress import read_progress
from proselflc.cli import main
from proselflc.errors import ConfigError
from proselflc.tuning import load_sweep, run_sweep

pytestmark = [pytest.mark.ray, pytest.mark.faults]


def _results(sweep_dir: Path) -> dict[str, bytes]:
    """Every trial's result.json, by trial directory name."""
    return {p.parent.name: p.read_bytes() for p in (sweep_dir / "trials").glob("*/result.json")}


def _files(directory: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.rglob("*") if p.is_file()}


def _copy(tiny_sweep: Path, target: Path) -> Path:
    shutil.copytree(tiny_sweep, target)
    return target


def test_resume_without_ray_s_tuner_pkl_restores_it_from_the_signed_snapshot_and_deletes_nothing(
    tiny_sweep: Path, tmp_path: Path
) -> None:
    results = _results(tiny_sweep)
    copy = _copy(tiny_sweep, tmp_path / "no-tuner" / "tiny")
    (copy / "trials" / "tuner.pkl").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["studies"][-1]["status"] = "searched"  # a study left to finish: the Tuner must be restored
    (copy / "manifest.json").write_text(json.dumps(manifest))

    lines: list[str] = []
    run_sweep(load_sweep(copy / "sweep.yaml"), resume=True, log=lines.append)

    assert any("tuner.pkl: missing; put back from the signed snapshot" in line for line in lines), lines
    assert any("restoring the interrupted sweep's Tuner" in line for line in lines), lines
    assert _results(copy) == results  # no trial deleted, re-run or added
    statuses = [s["status"] for s in json.loads((copy / "manifest.json").read_text())["studies"]]
    assert statuses == ["finished"] * len(statuses)

    stripped = _copy(tiny_sweep, tmp_path / "no-pkl" / "tiny")  # what `rsync --exclude '*.pkl'` leaves
    for pickled in stripped.rglob("*.pkl"):
        pickled.unlink()
    (stripped / "manifest.json").write_text(json.dumps(manifest))
    before = _files(stripped / "trials")
    with pytest.raises(ConfigError, match=r"\.pkl' is missing: the signed snapshot.*its trials are kept"):
        run_sweep(load_sweep(stripped / "sweep.yaml"), resume=True, log=lines.append)
    assert _files(stripped / "trials") == before


def test_a_copy_without_its_manifest_resumes_in_place_not_at_its_original(tiny_sweep: Path, tmp_path: Path) -> None:
    original = _files(tiny_sweep)
    results = _results(tiny_sweep)
    copy = _copy(tiny_sweep, tmp_path / "copy" / "tiny")
    (copy / "manifest.json").unlink()

    sweep = load_sweep(copy / "sweep.yaml")
    assert Path(sweep.sweep_dir) == copy.resolve()
    lines: list[str] = []
    run_sweep(sweep, resume=True, log=lines.append)

    assert any("manifest.json is missing: rebuilt" in line for line in lines), lines
    statuses = [s["status"] for s in json.loads((copy / "manifest.json").read_text())["studies"]]
    assert statuses == ["finished"] * len(statuses)
    assert _results(copy) == results
    assert _files(tiny_sweep) == original, "the copy resumed its original"


def test_a_sweep_that_fills_its_disk_stops_with_an_error_and_its_resume_ends_with_the_uninterrupted_table(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1100k", "tmpfs", str(disk)],
                             check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'})")
    try:
        sweep_file = tmp_path / "sweep.yaml"
        sweep_file.write_text(json.dumps({**TINY_SWEEP, "storage_path": str(disk)}))
        assert main(["tune", str(sweep_file)]) == 2
        out, err = capsys.readouterr()
        assert "epoch" in out  # trials ran before the disk filled
        assert "error: no space left on the device holding" in err and "--resume" in err, err
        progress = read_progress(disk / "tiny")
        assert progress.running and progress.headline().startswith("PARTIAL"), progress.statuses

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert main(["tune", str(disk / "tiny" / "sweep.yaml"), "--resume"]) == 0, capsys.readouterr()
        assert not read_progress(disk / "tiny").running
        assert summary(disk / "tiny") == summary(tiny_sweep)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_restored_experiment_is_recovered_at_once_before_any_trial_starts(
    ray_session: object, tmp_path: Path
) -> None:
    """What `--resume` does when the monitor's setup asks the scheduler to recover, Ray's controller holding the
    restored trials: a trial restored as finished whose files a full disk emptied is set aside into `.lost/` and
    runs again from its start under its id, stopping where it ended; an intact one stays finished; directories no
    restored trial owns that a killed driver started (params.json, or a checkpoint alone) go into `.orphaned/`
    with their driver staging copies (which Ray would upload back), and an empty one stays."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from proselflc.tuning.studies import StudyScheduler
    from test_ray_compat import _trial, restored_controller
    from test_studies import searcher

    experiment = tmp_path / "trials"
    lost, intact = _trial(tmp_path, "lost"), _trial(tmp_path, "intact")
    for trial, result_json in ((lost, '{"training_iteration": 1}\n'), (intact, '{"training_iteration": 2}\n')):
        trial.config = {"study": "symmetric-0.4/crossentropy", "phase": "search"}
        trial.set_status(Trial.TERMINATED)
        trial.run_metadata.last_result = {"training_iteration": 2}
        Path(trial.path).mkdir(parents=True)
        (Path(trial.path) / "params.json").write_text("" if trial is lost else "{}")  # as ENOSPC leaves it
        (Path(trial.path) / "result.json").write_text(result_json)
    (experiment / "killed_params").mkdir()
    (experiment / "killed_params" / "params.json").write_text("{}")
    (experiment / "killed_checkpoint" / "checkpoint_000000").mkdir(parents=True)
    (experiment / "never_started").mkdir()
    staged = Path(lost.local_experiment_path) / "killed_params"
    staged.mkdir(parents=True)
    (staged / "params.json").write_text("{}")

    scheduler = StudyScheduler(metric="val_accuracy", mode="max", make=None, searcher=searcher(["a"]))
    controller = restored_controller(tmp_path, [lost, intact], scheduler)
    recovery = scheduler.recover()
    assert recovery.replay == {"lost": 2} and recovery.set_aside == ["killed_checkpoint", "killed_params"]
    assert lost.status == Trial.PENDING and lost in controller.get_live_trials()
    assert (experiment / ".lost" / "lost" / "result.json").is_file() and not Path(lost.path).exists()
    assert scheduler.on_trial_result(None, lost, {"training_iteration": 1}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, lost, {"training_iteration": 2}) == TrialScheduler.STOP
    assert intact.status == Trial.TERMINATED and intact not in controller.get_live_trials()
    assert (experiment / ".orphaned" / "killed_checkpoint" / "checkpoint_000000").is_dir()
    assert (experiment / ".orphaned" / "killed_params" / "params.json").is_file() and not staged.exists()
    assert {p.name for p in experiment.iterdir() if p.is_dir()} == {".lost", ".orphaned", "intact", "never_started"}
    assert scheduler.recover().steps == ()  # once per fit
