"""`proselflc migrate` on a sweep directory's saved Ray state: a sweep interrupted under an earlier proselflc
(tests/data/earlier_sweep, made by its make_fixture.py with that version's code) is refused by `--resume`, rewritten
once after its signatures verify, and then resumed to the end by this version."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from proselflc.errors import ConfigError
from proselflc.sweep_contract import CURRENT_VERSION, read_manifest
from proselflc.tuning import state_guard
from proselflc.tuning.migrate import migrate
from proselflc.tuning.state_migration import current_searcher_state, load, searcher_state
from proselflc.tuning.studies import STATE_VERSION, SearcherState

DATA = Path(__file__).parent / "data"
EARLIER = DATA / "earlier_sweep" / "sweep.tar.gz"
#: The trials the earlier sweep had when it was interrupted: three search trials done, one final re-run running.
SEARCHED = {"b261d0f0", "6cbe76e4", "c29938ee"}
RUNNING_FINAL = "05956c5a"


@pytest.fixture
def earlier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The earlier sweep directory, unpacked, with the key that signed it as this user's key (mode 0600)."""
    with tarfile.open(EARLIER) as tar:
        tar.extractall(tmp_path, filter="data")
    key = tmp_path / "sweep-state.key"
    key.chmod(0o600)
    monkeypatch.setenv(state_guard.KEY_ENV, str(key))
    return tmp_path / "earlier"


def _bytes(sweep_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(sweep_dir)): p.read_bytes() for p in sorted(sweep_dir.rglob("*")) if p.is_file()}


def test_the_earlier_state_is_rewritten_once_signed_again_and_in_one_snapshot_layout(earlier: Path) -> None:
    assert read_manifest(earlier).version == 2
    changes = migrate(earlier)
    trials = earlier / "trials"
    session = "2026-12-07_17-06-13"
    assert f"trials/searcher-state-{session}.pkl: searcher state version 1 -> {STATE_VERSION}" in changes
    assert f"trials/search_gen_state-{session}.json: Ray's ConcurrencyLimiter counted the trials itself -> the " \
           "plan counts them" in changes
    assert f"trials/tuner.pkl: its searcher's state version 1 -> {STATE_VERSION}" in changes
    assert "trials/tuner.pkl: its monitor is given the sweep's scheduler (it recovers a restored experiment " \
           "through it)" in changes
    assert "Ray's state signed again with your key, as .state-backup/1/" in changes
    assert f"manifest.json: version 2 -> {CURRENT_VERSION} (its Ray state in this form)" in changes
    assert read_manifest(earlier).version == CURRENT_VERSION
    # One layout: a generation, verified by the run-time code, and nothing of the earlier one left.
    assert [p.name for p in (earlier / state_guard.SNAPSHOT).iterdir()] == ["1"]
    assert state_guard.verify(earlier, trials) == []
    # What the run-time code reads is in this version's form.
    state = pickle.loads((trials / f"searcher-state-{session}.pkl").read_bytes())
    assert isinstance(state, SearcherState) and state.version == STATE_VERSION
    ce = state.plan.studies["symmetric-0.4/crossentropy"]
    assert {t[:8] for t in ce.search_done} == SEARCHED and {t[:8] for t in ce.in_flight} == {RUNNING_FINAL}
    limiter = load((trials / f"search_gen_state-{session}.json").read_bytes())["name:ConcurrencyLimiter"]
    assert limiter["_limit_concurrency"] is False
    tuner = load((trials / "tuner.pkl").read_bytes())
    monitor = tuner["_run_config"].callbacks[0]
    assert monitor.scheduler is tuner["_tune_config"].scheduler and monitor.searcher is monitor.scheduler.searcher
    assert "studies" not in vars(monitor.searcher) and monitor.searcher.state.version == STATE_VERSION
    # Once: a second run rewrites nothing.
    before = _bytes(earlier)
    assert migrate(earlier) == []
    assert _bytes(earlier) == before


def test_resume_refuses_the_earlier_state_naming_migrate(earlier: Path, tmp_path: Path) -> None:
    from proselflc import safe_yaml
    from proselflc.tuning import build_sweep_config
    from proselflc.tuning.sweep import SweepRunner

    migrate(earlier / "sweep.yaml")  # the sweep file only: its Ray state stays as the earlier version saved it
    raw = safe_yaml.load_text((earlier / "sweep.yaml").read_text())
    sweep = build_sweep_config({**raw, "storage_path": str(tmp_path)})
    with pytest.raises(ConfigError, match=rf"--resume: .*manifest.json version 2.*run `proselflc migrate {earlier}`"):
        SweepRunner(sweep).prepare(resume=True)


def test_the_report_reads_the_earlier_sweep_without_migrating_it(earlier: Path) -> None:
    """Only `--resume` needs the migration: the analysis reads results, not Ray's state."""
    from proselflc.analysis import load_sweep

    before = _bytes(earlier)
    rows = load_sweep(earlier)
    trials = rows.drop_duplicates(["study", "phase", "trial_id"])
    assert {(t.study, t.phase) for t in trials.itertuples()} == {("symmetric-0.4/crossentropy", "search"),
                                                                  ("symmetric-0.4/crossentropy", "final")}
    assert sorted(trials["trial_id"].str[:8]) == sorted([*SEARCHED, RUNNING_FINAL])
    assert _bytes(earlier) == before


def test_state_that_does_not_verify_is_not_unpickled_nor_rewritten(earlier: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The migration unpickles Ray's state: under another user's key, or changed since it was signed, it is
    refused, naming the file, and nothing is written; `--trust-state` is the user vouching for it."""
    before = _bytes(earlier)
    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "another-users.key"))
    with pytest.raises(ConfigError, match=r"migrate: .*' does not match its signature under your key.*"
                                          r"so `proselflc migrate` is refused. Pass --trust-state"):
        migrate(earlier)
    assert _bytes(earlier) == before
    changes = migrate(earlier, trust_state=True)
    assert "Ray's state: not verified (--trust-state)" in changes
    assert state_guard.verify(earlier, earlier / "trials") == []  # signed under the key of the user who vouched


def test_state_without_a_snapshot_is_refused_unless_trusted(earlier: Path) -> None:
    import shutil

    shutil.rmtree(earlier / state_guard.SNAPSHOT)
    with pytest.raises(ConfigError, match="migrate: .* no signed snapshot .* migrate with --trust-state"):
        migrate(earlier)
    assert read_manifest(earlier).version == 2
    assert f"manifest.json: version 2 -> {CURRENT_VERSION} (its Ray state in this form)" in migrate(
        earlier, trust_state=True
    )


def test_a_snapshot_left_mid_swap_by_an_earlier_version_is_read_and_removed(earlier: Path) -> None:
    """An earlier version replaced its one snapshot by renaming: killed between, the snapshot is in `.old`."""
    (earlier / state_guard.SNAPSHOT).rename(earlier / f"{state_guard.SNAPSHOT}.old")
    changes = migrate(earlier)
    assert "the earlier one-snapshot layout of .state-backup/ removed" in changes
    assert not (earlier / f"{state_guard.SNAPSHOT}.old").exists()
    assert [p.name for p in (earlier / state_guard.SNAPSHOT).iterdir()] == ["1"]


def test_object_storage_is_named_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="is on object storage; migrate works on a local directory: copy"):
        migrate("s3://bucket/sweeps/earlier")


FIXTURE_V1 = DATA / "searcher_state_v1"


def test_a_version_1_state_is_rewritten_and_goes_on_as_the_searcher_that_saved_it(tmp_path: Path) -> None:
    """state.pkl is a pickled StudySearcher.__dict__ written by the code before SearcherState (make_fixture.py);
    expected.json holds what that searcher dealt next."""
    from ray.tune.result import TRAINING_ITERATION

    from proselflc.tuning.plan import ITERATION
    from test_studies import searcher

    assert ITERATION == TRAINING_ITERATION
    expected = json.loads((FIXTURE_V1 / "expected.json").read_text())
    state, changes = current_searcher_state(load((FIXTURE_V1 / "state.pkl").read_bytes()))
    assert changes == [f"searcher state version 1 -> {STATE_VERSION}"]
    s = searcher(["symmetric-0.2/ce", "symmetric-0.2/fixed", "symmetric-0.4/ce"])
    (tmp_path / "state.pkl").write_bytes(pickle.dumps(state))
    s.restore(str(tmp_path / "state.pkl"))
    ce, fixed = s.studies["symmetric-0.2/ce"], s.studies["symmetric-0.2/fixed"]
    assert (ce.in_flight, ce.search_done, fixed.in_flight, fixed.final_seed) == ({"t3"}, {"t1"}, {"f1"}, {"f1": 1})
    assert not fixed.searchable and set(s.samplers) == {"symmetric-0.2/ce", "symmetric-0.4/ce"}
    assert s.scheduling.members == {"t3": "symmetric-0.2/ce"}  # the per-study ASHA state came along
    assert [s.suggest(t) for t in ("f2", "x1")] == expected["next"]
    s.on_trial_complete("t3", {"val_accuracy": 0.7, "epoch": 3, "training_iteration": 3})
    assert s.suggest("f3") == expected["after_t3"]
    assert {k: v.status for k, v in s.studies.items()} == expected["statuses"]


def test_a_state_missing_a_field_added_since_gets_its_default() -> None:
    """Pickle restores `__dict__` only: a dataclass field added after the state was saved is given its default."""
    from test_studies import searcher

    state = searcher(["a"]).state
    study = state.plan.studies["a"]
    del study.__dict__["runner_up"], study.__dict__["final_done"], state.plan.__dict__["notes"]
    restored, changes = current_searcher_state(pickle.loads(pickle.dumps(state)))
    assert changes == ["3 fields added since it was saved, at their defaults"]
    assert (restored.plan.studies["a"].runner_up, restored.plan.studies["a"].final_done, restored.plan.notes) == (
        None, set(), []
    )
    with pytest.raises(ConfigError, match="neither a proselflc searcher state nor one of an earlier version"):
        searcher_state({"something": "else"})


@pytest.mark.ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_the_earlier_sweep_resumes_to_the_end_once_migrated(
    ray_session: Any, earlier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI as a user runs it: `tune --resume` refuses the earlier sweep naming `migrate`; after `migrate`, it
    resumes: the running final re-run completes, the pending study is searched and re-run, and no trial the earlier
    sweep had finished runs again. (The refusal and the migration run in this process; the resume in its own.)"""
    from proselflc import cli

    sweep_file = earlier / "sweep.yaml"
    trials = earlier / "trials"
    rows = {d.name: (d / "result.json").read_text() for d in trials.iterdir() if d.name.split("_")[-1] in SEARCHED}
    assert cli.main(["tune", str(sweep_file), "--resume"]) == 2
    assert f"run `proselflc migrate {sweep_file}`" in capsys.readouterr().err

    assert cli.main(["migrate", str(earlier)]) == 0
    assert f"{earlier}: manifest.json: version 2 -> {CURRENT_VERSION}" in capsys.readouterr().out
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    resume = [sys.executable, "-m", "proselflc.cli", "tune", str(sweep_file), "--resume"]
    resumed = subprocess.run(resume, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "restoring the interrupted sweep's Tuner" in resumed.stdout

    manifest = read_manifest(earlier)
    assert manifest.finished and manifest.version == CURRENT_VERSION
    ce = manifest.entry("symmetric-0.4/crossentropy")
    assert {name.split("_")[-1] for name in ce.trial_order} == SEARCHED  # its search was not run again
    assert [name.split("_")[-1] for name in ce.final_trials] == [RUNNING_FINAL]  # continued, not dealt again
    assert {d.name: (d / "result.json").read_text() for d in trials.iterdir() if d.name in rows} == rows
    final = [json.loads(line) for line in (trials / ce.final_trials[0] / "result.json").read_text().splitlines()]
    # Continued from its last checkpoint in the saved state: the epochs after it are trained (and reported) again.
    assert final[-1]["epoch"] == 3 and {row["epoch"] for row in final} == {1, 2, 3}
    smoothing = manifest.entry("symmetric-0.4/labelsmoothing")
    assert len(smoothing.trial_order) == 3 and len(smoothing.final_trials) == 1
    assert sorted(d.name for d in trials.iterdir() if d.is_dir() and "_" in d.name) == sorted(
        [*ce.trial_order, *ce.final_trials, *smoothing.trial_order, *smoothing.final_trials]
    )
