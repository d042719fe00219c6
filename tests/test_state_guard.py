"""Ray Tune's pickled sweep state is snapshotted and signed as it is saved, and verified before `--resume`.

Unit tests on files laid out as Ray lays them out (a staging dir where Ray saves, the storage experiment
dir it syncs to); the end-to-end resumes (a code-carrying tuner.pkl, state cut off as by a full disk, a
copied sweep directory, another user's key) are in test_tuning_resume.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proselflc.config import ConfigError
from proselflc.tuning import state_guard
from proselflc.tuning.state_guard import SIGNATURES, SNAPSHOT, StateSigner, last_snapshot, verify


@pytest.fixture(autouse=True)
def own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "keys" / "sweep.key"
    monkeypatch.setenv(state_guard.KEY_ENV, str(key))
    return key


def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(sweep dir, staging dir, experiment dir) with Ray's state saved in staging and synced to storage."""
    sweep, staging = tmp_path / "sweep", tmp_path / "staging"
    exp = sweep / "trials"
    (exp / "t1").mkdir(parents=True)
    staging.mkdir()
    (exp / "tuner.pkl").write_bytes(b"tuner-v1")
    (staging / "searcher-state-2026.pkl").write_bytes(b"searcher-v1")
    (staging / "experiment_state-2026.json").write_text('{"trials": 1}')
    sync(staging, exp)
    (exp / "t1" / "error.pkl").write_bytes(b"error")
    (exp / "t1" / "result.json").write_text('{"epoch": 1}\n')
    return sweep, staging, exp


def sync(staging: Path, exp: Path) -> None:
    for file in staging.iterdir():
        (exp / file.name).write_bytes(file.read_bytes())


def test_the_key_is_created_private_and_refused_when_others_can_read_it(own_key: Path) -> None:
    key = state_guard.load_key()
    assert len(key) == 64 and own_key.stat().st_mode & 0o777 == 0o600
    assert state_guard.load_key() == key
    own_key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users.*chmod 600"):
        state_guard.load_key()


def test_each_save_is_snapshotted_and_signed_once(tmp_path: Path) -> None:
    sweep, staging, exp = layout(tmp_path)
    signer = StateSigner()
    assert signer.sign(sweep, staging, exp) is True
    first = last_snapshot(sweep)
    signatures = json.loads((first / SIGNATURES).read_text())
    assert sorted(signatures) == ["experiment_state-2026.json", "searcher-state-2026.pkl", "tuner.pkl"]
    assert signer.sign(sweep, staging, exp) is False  # nothing changed
    (staging / "searcher-state-2026.pkl").write_bytes(b"searcher-v2")
    assert signer.sign(sweep, staging, exp) is True
    second = last_snapshot(sweep)
    assert (second / "searcher-state-2026.pkl").read_bytes() == b"searcher-v2"
    assert [p.name for p in (sweep / SNAPSHOT).iterdir()] == [second.name], "older generations are deleted"
    sync(staging, exp)
    assert verify(sweep, exp) == ["1 trials' pickled errors set aside (their error.txt is kept)"]
    assert (exp / "t1" / "error.pkl.rejected").exists() and (exp / "t1" / "result.json").exists()


def test_state_cut_off_or_synced_late_is_replaced_by_the_signed_snapshot(tmp_path: Path) -> None:
    sweep, staging, exp = layout(tmp_path)
    StateSigner().sign(sweep, staging, exp)
    (exp / "experiment_state-2026.json").write_text('{"tri')  # what ENOSPC or a kill mid-write leaves
    (exp / "searcher-state-2027.pkl").write_bytes(b"a newer save the monitor never saw")
    notes = verify(sweep, exp)
    assert notes[:2] == [
        "experiment_state-2026.json: not the last signed state (cut off, late or changed); set aside for the signed copy",
        "searcher-state-2027.pkl: not the last signed state (cut off, late or changed); set aside for the signed copy",
    ]
    assert (exp / "experiment_state-2026.json").read_text() == '{"trials": 1}'
    assert (exp / "experiment_state-2026.json.rejected").read_text() == '{"tri'
    assert not (exp / "searcher-state-2027.pkl").exists()


def test_a_replaced_tuner_pickle_is_never_what_ray_loads(tmp_path: Path) -> None:
    sweep, staging, exp = layout(tmp_path)
    StateSigner().sign(sweep, staging, exp)
    (exp / "tuner.pkl").write_bytes(b"someone else's code")
    verify(sweep, exp)
    assert (exp / "tuner.pkl").read_bytes() == b"tuner-v1"


def test_state_signed_under_another_key_or_not_at_all_is_refused(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sweep, staging, exp = layout(tmp_path)
    with pytest.raises(ConfigError, match="no signed snapshot.*--trust-state"):
        verify(sweep, exp)
    StateSigner().sign(sweep, staging, exp)
    (last_snapshot(sweep) / "tuner.pkl").write_bytes(b"changed inside the snapshot")
    with pytest.raises(ConfigError, match=r"tuner.pkl' does not match its signature under your key"):
        verify(sweep, exp)
    StateSigner().sign(sweep, staging, exp)
    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "other.key"))  # another user's key
    with pytest.raises(ConfigError, match="does not match its signature under your key"):
        verify(sweep, exp)


def test_a_generation_a_kill_left_unsigned_is_ignored_and_an_earlier_layout_is_not_read(tmp_path: Path) -> None:
    """A kill mid-snapshot leaves a generation without signatures.json: the previous one is the snapshot. An
    earlier proselflc's one snapshot in `.state-backup/` itself is not a snapshot to the run-time code (`proselflc
    migrate` rewrites it into a generation)."""
    sweep, staging, exp = layout(tmp_path)
    signer = StateSigner()
    signer.sign(sweep, staging, exp)
    signed = last_snapshot(sweep)
    cut = sweep / SNAPSHOT / str(int(signed.name) + 1)
    cut.mkdir()
    (cut / "tuner.pkl").write_bytes(b"half a sna")
    assert last_snapshot(sweep) == signed
    assert verify(sweep, exp)[-1] == "1 trials' pickled errors set aside (their error.txt is kept)"

    earlier = tmp_path / "earlier"
    (earlier / SNAPSHOT).mkdir(parents=True)
    for file in signed.iterdir():
        (earlier / SNAPSHOT / file.name).write_bytes(file.read_bytes())
    assert last_snapshot(earlier) is None
    with pytest.raises(ConfigError, match="no signed snapshot"):
        verify(earlier, exp)
