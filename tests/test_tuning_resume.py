"""Resume: a sweep interrupted by Ctrl+C in another process continues with `--resume`, restoring the
sweep's one Tuner (its finished trials kept, not re-run) and finishing every study.
(Resuming a finished sweep is covered in test_tuning.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import gated_driver
from conftest import TINY_SWEEP
from proselflc import ray_compat
from proselflc.tuning import load_sweep, run_sweep
from sweep_files import study_trials

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _wait_for(condition, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out; sweep output:\n{log.read_text()}")
        time.sleep(0.1)


def _full_length(experiment: Path, epochs: int = 3, pattern: str = "*") -> dict[Path, bytes]:
    """result.json contents of the trials (dirs matching `pattern`) that have reported their last epoch."""
    out = {}
    for path in experiment.glob(f"{pattern}/result.json"):
        lines = path.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("epoch") == epochs:
            out[path] = path.read_bytes()
    return out


def _rerun(before: dict[Path, bytes]) -> list[Path]:
    """The trials of `before` (full-length result.json contents) that were trained again after the resume.

    A trial can report its last epoch and be stopped before Ray records it as ended (the Ctrl+C falls between the
    two): the signed state holds it as running, so the resume restores it from its last checkpoint, which was
    saved with that epoch, and it reports that epoch again without training (the analysis keeps one row per
    epoch). Any other change to its result.json (rows of other epochs, other values, rows lost) is a re-run."""
    rerun = []
    for path, old in before.items():
        new = path.read_bytes()
        if new == old:
            continue
        last = _metrics(old.splitlines()[-1])
        extra = new[len(old):].splitlines() if new.startswith(old) else [b""]
        if not all(row.strip() and _metrics(row) == last for row in extra):
            rerun.append(path)
    return rerun


def _metrics(line: bytes) -> dict[str, Any]:
    """A result.json row without Ray's bookkeeping (times, iteration counters): what the run reported."""
    return {k: v for k, v in json.loads(line).items() if k not in ray_compat.RESULT_BOOKKEEPING_KEYS}


def _reported(log: Path, pattern: str, count: int = 1):
    """A condition on the driver's own output: `count` finished-trial lines matching `pattern` were printed.

    The driver prints a trial's line the moment Ray Tune tells it the trial ended; the trial files in the sweep
    directory appear only when Ray next syncs its staging directory, which can lag behind the whole sweep on a
    loaded machine, so waiting for them could let the sweep finish before the interrupt."""
    regex = re.compile(pattern)
    return lambda: sum(bool(regex.search(line)) for line in log.read_text().splitlines()) >= count


def _running(pid: int) -> bool:
    """Whether process `pid` still runs (one that exited and awaits its parent's wait, a zombie, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_actors_gone(driver_pid: int, timeout: float = 120) -> None:
    """Wait until Ray has every actor of an exited driver's job dead and none of their processes runs.

    Ray kills a job's actors once its driver has gone; until then a trial actor may still be writing a checkpoint
    into the sweep directory, afterwards nothing can. `timeout` only bounds a failure, which is reported."""
    actors = ray_compat.job_actors(driver_pid)
    assert actors, f"Ray knows no actors of the driver (pid {driver_pid}), which ran trials"
    deadline = time.monotonic() + timeout
    while not all(state == "DEAD" and not _running(pid) for pid, state in actors):
        assert time.monotonic() < deadline, f"the stopped driver's actors still run after {timeout} s: {actors}"
        time.sleep(0.1)
        actors = ray_compat.job_actors(driver_pid)


#: `proselflc` as a user runs it; tests/gated_driver.py is the same with the final re-runs held at a gate.
CLI = [sys.executable, "-m", "proselflc.cli"]


def _interrupt_when(
    condition, sweep_file: Path, ray_session: Any, log: Path, driver: list[str] = CLI, *args: str, presses: int = 1
) -> str:
    """Run `<driver> tune sweep_file [args]` in its own process (connected to this session's Ray like a cluster
    job), send it Ctrl+C (`presses` times, a second apart) once `condition()` holds, check it exits 130; its output,
    once every actor it started is gone (so the sweep directory no longer changes)."""
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    with log.open("w") as out:
        proc = subprocess.Popen([*driver, "tune", str(sweep_file), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        _wait_for(condition, 240, proc, log)
        for press in range(presses):
            if press:
                time.sleep(1.0)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _wait_for_actors_gone(proc.pid)
    return log.read_text()


SAMPLES = 8


def test_interrupted_sweep_resumes_where_it_stopped(ray_session: Any, tmp_path: Path) -> None:
    raw = {
        **TINY_SWEEP,
        "name": "resume",
        "storage_path": str(tmp_path / "results"),
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"proselflc": TINY_SWEEP["methods"]["proselflc"]},
        "num_samples": SAMPLES,  # enough that the interrupt lands mid-study, after the first full-length trial
        "final_seeds": 0,
        "checkpoint_every": 1,
    }
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    sweep_dir = tmp_path / "results" / "resume"
    manifest = sweep_dir / "manifest.json"
    search = sweep_dir / "trials"

    log = tmp_path / "sweep.log"
    output = _interrupt_when(_reported(log, r"search \w+: epoch 3/3"), sweep_file, ray_session, log)
    assert "--resume" in output
    assert "snapshotting has been triggered" not in output  # checkpoint_every: 1 does not flood the console

    (entry,) = json.loads(manifest.read_text())["studies"]
    assert entry["status"] == "searching"
    done_before = _full_length(search)
    started = {p.parent.name for p in search.glob("*/params.json")}
    assert started

    lines: list[str] = []
    run_sweep(load_sweep(sweep_file), resume=True, log=lines.append)

    assert any("restoring the interrupted sweep's Tuner" in line for line in lines)
    assert _rerun(done_before) == []  # finished trials were not re-run
    after = study_trials(sweep_dir, "symmetric-0.4/proselflc")
    assert len(after) == SAMPLES  # the interrupted search was continued, not replaced by new trials
    assert started <= {p.parent.name for p in search.glob("*/params.json")}
    assert max(rows[-1]["epoch"] for _, rows in after) == 3
    (entry,) = json.loads(manifest.read_text())["studies"]
    assert entry["status"] == "finished" and entry["best_params"] in [p for p, _ in after]


def test_sweep_interrupted_during_the_final_runs_resumes_them(ray_session: Any, tmp_path: Path) -> None:
    """Ctrl+C in the shared final-run Tuner: --resume restores it, keeps finished re-runs, runs the rest.

    The driver (tests/gated_driver.py) holds the second re-run part-way, so the Ctrl+C lands when exactly one
    re-run has finished and one is running, however fast the machine."""
    seeds, epochs = 6, 4
    raw = {
        **TINY_SWEEP,
        "name": "resume-final",
        "storage_path": str(tmp_path / "results"),
        "base": {**TINY_SWEEP["base"], "train": {**TINY_SWEEP["base"]["train"], "epochs": epochs}},
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"crossentropy": {"search": {}}, "labelsmoothing": {"search": {}}},  # one fixed trial each
        "final_seeds": seeds,  # 12 re-runs
        "max_concurrent_trials": 1,
        "checkpoint_every": 1,
    }
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    sweep_dir = tmp_path / "results" / "resume-final"
    experiment = sweep_dir / "trials"
    studies = [f"symmetric-0.4/{method}" for method in ("crossentropy", "labelsmoothing")]

    gate = tmp_path / "gate"
    gate.mkdir()
    log = tmp_path / "sweep.log"
    driver = [sys.executable, gated_driver.__file__, str(gate)]
    output = _interrupt_when((gate / "held").exists, sweep_file, ray_session, log, driver)
    assert "sweep interrupted; its state is saved" in output
    statuses = [entry["status"] for entry in json.loads((sweep_dir / "manifest.json").read_text())["studies"]]
    # One trial at a time: the first study re-runs (its finals are dealt first) before the second starts.
    assert statuses == ["searched", "pending"]
    done_before = _full_length(experiment, epochs=epochs, pattern="*_final_*")
    assert len(done_before) == 1, "exactly the first re-run finished before the Ctrl+C"
    (held,) = experiment.glob(f"*_{(gate / 'held').read_text()}/result.json")
    held_before = held.read_text()
    assert json.loads(held_before.splitlines()[-1])["epoch"] == gated_driver.HOLD_AT_EPOCH

    lines: list[str] = []
    run_sweep(load_sweep(sweep_file), resume=True, log=lines.append)

    assert any("restoring the interrupted sweep's Tuner" in line for line in lines)
    assert _rerun(done_before) == []  # finished re-runs were not re-run
    held_epochs = [json.loads(line)["epoch"] for line in held.read_text().splitlines()]
    assert held.read_text().startswith(held_before) and held_epochs.count(1) == 1, held_epochs  # from its checkpoint
    runs = [(study, params["train.seed"], rows) for study in studies for params, rows in study_trials(sweep_dir, study, "final")]
    assert sorted((study, seed) for study, seed, _ in runs) == sorted(
        (study, seed) for study in studies for seed in range(1, seeds + 1)
    )
    assert all(rows[-1]["epoch"] == epochs for _, _, rows in runs)
    statuses = [entry["status"] for entry in json.loads((sweep_dir / "manifest.json").read_text())["studies"]]
    assert statuses == ["finished", "finished"]


def _interrupted_guarded_sweep(tmp_path: Path, ray_session: Any) -> Path:
    """A one-study sweep (SAMPLES search trials, one re-run) stopped by Ctrl+C after two full-length trials."""
    raw = {
        **TINY_SWEEP,
        "name": "guarded",
        "storage_path": str(tmp_path / "results"),
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"proselflc": TINY_SWEEP["methods"]["proselflc"]},
        "num_samples": SAMPLES,
        "final_seeds": 1,
        "checkpoint_every": 1,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    original = tmp_path / "results" / "guarded"
    log = tmp_path / "sweep.log"
    _interrupt_when(_reported(log, r"search \w+: epoch 3/3", 2), sweep_file, ray_session, log)
    return original


def _run_or_explain(cli: list[str], env: dict[str, str], sweep_dir: Path, timeout: float = 300):
    """Run the CLI; on a timeout, fail with what it printed and the stacks its stall watch wrote."""
    try:
        return subprocess.run(cli, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        stacks = sweep_dir / "driver-stacks.txt"
        printed = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        raise AssertionError(
            f"{' '.join(cli[-3:])} did not end in {timeout} s; it printed:\n{printed}\n--- stacks:\n"
            f"{stacks.read_text() if stacks.is_file() else '(none written)'}"
        ) from None


def _files(directory: Path) -> dict[Path, tuple[int, int]]:
    """Every file under `directory` with its modification time and size."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.rglob("*") if p.is_file()}


class _Evil:
    """A pickle that runs code when loaded: what a hostile tuner.pkl could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.faults
def test_resume_verifies_ray_state_falls_back_to_signed_copies_and_runs_in_place(
    ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted sweeps, copied: a tuner.pkl replaced by code is never loaded; state cut off (as ENOSPC leaves
    it) resumes from the last signed copies (set aside, not loaded) without losing a finished trial; under another user's
    key the resume is refused; and each copy resumes where it is, not at its original.

    Each resumed copy comes from its own interrupted run: Ray Tune gives a restored trial the staging directory
    of the run that created it, so two copies of ONE experiment restored in one Ray session would share it."""
    import pickle
    import shutil

    from proselflc.config import ConfigError
    from proselflc.tuning import state_guard

    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "key"))

    def copy(name: str) -> Path:
        original = _interrupted_guarded_sweep(tmp_path / name, ray_session)
        assert state_guard.has_snapshot(original)
        target = tmp_path / name / "copy" / "guarded"
        shutil.copytree(original, target)
        return target

    def finished(sweep_dir: Path, before: dict[Path, bytes]) -> None:
        manifest = json.loads((sweep_dir / "manifest.json").read_text())
        assert [s["status"] for s in manifest["studies"]] == ["finished"]
        assert len(study_trials(sweep_dir, "symmetric-0.4/proselflc")) == SAMPLES
        assert len(study_trials(sweep_dir, "symmetric-0.4/proselflc", "final")) == 1
        assert _rerun(before) == []  # no finished trial re-run or lost

    marker = tmp_path / "pwned"
    evil = copy("evil")
    (evil / "trials" / "tuner.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    lines: list[str] = []
    before = _full_length(evil / "trials")
    run_sweep(load_sweep(evil / "sweep.yaml"), resume=True, log=lines.append)
    assert not marker.exists(), "code from the sweep directory ran"
    assert any("tuner.pkl: not the last signed state" in line for line in lines), lines
    finished(evil, before)

    cut = copy("cut")
    cut_off: dict[Path, bytes] = {}
    for state in [*(cut / "trials").glob("experiment_state-*.json"), *(cut / "trials").glob("searcher-state-*.pkl")]:
        cut_off[state] = state.read_bytes()[: len(state.read_bytes()) // 3]  # what a full disk leaves
        state.write_bytes(cut_off[state])
    assert {state.suffix for state in cut_off} == {".json", ".pkl"}, cut_off
    before = _full_length(cut / "trials")
    cut_lines: list[str] = []
    run_sweep(load_sweep(cut / "sweep.yaml"), resume=True, log=cut_lines.append)
    for state, cut_bytes in cut_off.items():  # set aside, and the signed copy restored in its place
        assert f"{state.name}: not the last signed state (cut off, late or changed)" in "\n".join(cut_lines), cut_lines
        assert state.with_name(state.name + ".rejected").read_bytes() == cut_bytes
    assert any("restoring the interrupted sweep's Tuner" in line for line in cut_lines), cut_lines
    finished(cut, before)

    foreign = tmp_path / "foreign" / "guarded"
    shutil.copytree(evil.parents[1] / "results" / "guarded", foreign)  # refused before Ray restores anything
    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "another-users-key"))
    with pytest.raises(ConfigError, match=r"does not match its signature under your key.*--trust-state"):
        run_sweep(load_sweep(foreign / "sweep.yaml"), resume=True, log=lines.append)

    # That no copy writes into its original is test_a_resumed_copy_leaves_its_original_untouched.


@pytest.mark.faults
def test_a_sweep_resumed_on_a_full_disk_fails_cleanly_and_finishes_once_space_is_freed(
    ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real full disk: the interrupted sweep is moved onto a tmpfs with little room left, `--resume` runs out
    of space (an error, not a hang), then the tmpfs is enlarged and `--resume` finishes, every trial kept."""
    import shutil

    from proselflc.tuning import state_guard

    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "key"))
    original = _interrupted_guarded_sweep(tmp_path, ray_session)
    used_kib = int(subprocess.run(["du", "-sk", str(original)], capture_output=True, text=True, check=True)
                   .stdout.split()[0])
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used_kib + 128}k", "tmpfs", str(disk)],
                             check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'})")
    try:
        shutil.copytree(original, disk / "guarded")
        before = _full_length(disk / "guarded" / "trials")
        # A driver stuck on Ray says so (with its stacks in the sweep dir) well before the timeout.
        env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address,
               "PROSELFLC_STALL_WARN_S": "60"}
        cli = [sys.executable, "-m", "proselflc.cli", "tune", str(disk / "guarded" / "sweep.yaml"), "--resume"]
        full = _run_or_explain(cli, env, disk / "guarded")
        assert full.returncode != 0, full.stdout + full.stderr
        manifest = json.loads((disk / "guarded" / "manifest.json").read_text())
        assert manifest["studies"][0]["status"] != "finished"
        # Ray rewrites every trial's files on each copy to storage, so the full disk may have cut finished ones:
        # those are run again from their start (their cut dirs kept in .lost/), every other one is left as it was.
        cut = set(_rerun(before))
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        freed = _run_or_explain(cli, env, disk / "guarded")
        assert freed.returncode == 0, freed.stdout + freed.stderr
        sweep_dir = disk / "guarded"
        manifest = json.loads((sweep_dir / "manifest.json").read_text())
        assert [s["status"] for s in manifest["studies"]] == ["finished"]
        assert len(study_trials(sweep_dir, "symmetric-0.4/proselflc")) == SAMPLES
        assert len(study_trials(sweep_dir, "symmetric-0.4/proselflc", "final")) == 1
        printed = f"\n--- full disk:\n{full.stdout}{full.stderr}\n--- freed:\n{freed.stdout}{freed.stderr}"
        changed = [p.parent.name for p in _rerun({p: old for p, old in before.items() if p not in cut})]
        assert not changed, f"finished trials whose results were intact were run again: {changed}{printed}"
        for path in cut:
            assert (path.parent.parent / ".lost" / path.parent.name).is_dir(), printed
            assert json.loads(path.read_text().splitlines()[-1])["epoch"] == 3, printed
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.faults
def test_a_resumed_copy_leaves_its_original_untouched(
    ray_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of an interrupted sweep resumes and finishes in the copy: its final re-runs, created only after
    the restore, write nothing into the directory it was copied from (Ray 2.60 would: `ray_compat`)."""
    import shutil

    from proselflc.tuning import state_guard

    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "key"))
    original = _interrupted_guarded_sweep(tmp_path, ray_session)  # its driver's actors are gone: it is still
    seen = _files(original)
    target = tmp_path / "copy" / "guarded"
    shutil.copytree(original, target)
    run_sweep(load_sweep(target / "sweep.yaml"), resume=True, log=lambda line: None)
    assert json.loads((target / "manifest.json").read_text())["studies"][0]["status"] == "finished"
    assert _files(original) == seen, "the resumed copy wrote into its original"


def _trials_and_epochs(sweep_dir: Path) -> list[tuple[float, int]]:
    """(lr, epochs trained) of every search trial, in the order the study dealt them (the manifest's)."""
    (entry,) = json.loads((sweep_dir / "manifest.json").read_text())["studies"]
    out = []
    for name in entry["trial_order"]:
        rows = [json.loads(line) for line in (sweep_dir / "trials" / name / "result.json").read_text().splitlines()]
        out.append((rows[-1]["config"]["optim.lr"], rows[-1]["epoch"]))
    return out


def test_the_schedulers_state_survives_ctrl_c_and_a_double_ctrl_c_exits_130(ray_session: Any, tmp_path: Path) -> None:
    """ASHA's rungs are restored with the searcher: a sweep interrupted after its first trial (and again, by a double
    Ctrl+C, later) trains exactly the trials and epochs of an uninterrupted one, one trial at a time.

    Seeded so that the second trial (lr 1e-4) learns nothing and ASHA stops it at a rung (epoch 2 or 4) against
    the first trial's values; a resumed sweep that lost ASHA's state compared it with nothing and trained it 6/6.
    tests/gated_driver.py --search holds the search trials after the first at epoch 1, before that rung."""
    raw = {
        **TINY_SWEEP,
        "name": "asha",
        "base": {**TINY_SWEEP["base"], "train": {**TINY_SWEEP["base"]["train"], "epochs": 6}},
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"crossentropy": {"search": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 0.5}}}},
        "scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 2},
        "searcher": {"seed": 10},
        "final_seeds": 0,
        "checkpoint_every": 1,
    }
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    runs = {}
    for name in ("uninterrupted", "interrupted"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.yaml").write_text(yaml.safe_dump({**raw, "storage_path": str(tmp_path / name)}))
        runs[name] = tmp_path / name / "asha"

    done = subprocess.run([*CLI, "tune", str(tmp_path / "uninterrupted" / "sweep.yaml")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = _trials_and_epochs(runs["uninterrupted"])
    assert expected[0][1] == 6 and expected[1][1] < 6, expected  # what the seed is chosen for

    gate = tmp_path / "gate"
    gate.mkdir()
    driver = [sys.executable, gated_driver.__file__, "--search", str(gate)]
    sweep_file = tmp_path / "interrupted" / "sweep.yaml"
    _interrupt_when((gate / "held").exists, sweep_file, ray_session, tmp_path / "first.log", driver)
    held = (gate / "held").read_text()
    (gate / "held").unlink()
    # Resumed: the held trial goes on from its checkpoint (past the gate); the third is held, then Ctrl+C twice.
    output = _interrupt_when(lambda: (gate / "held").exists(), sweep_file, ray_session, tmp_path / "second.log",
                             driver, "--resume", presses=2)
    assert (gate / "held").read_text() != held, output
    assert "internal error" not in output

    resumed = subprocess.run([*CLI, "tune", str(sweep_file), "--resume"], env=env, capture_output=True, text=True,
                             timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _trials_and_epochs(runs["interrupted"]) == expected
