"""Ray Tune's pickled sweep state is signed as it is written and verified before `--resume` loads it.

Unit tests on files laid out as Ray lays them out; the end-to-end resumes (a code-carrying tuner.pkl, state
cut off as by a full disk, a copied sweep directory) are in test_tuning_resume.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from proselflc.config import ConfigError
from proselflc.tuning import state_guard
from proselflc.tuning.state_guard import BACKUP_DIR, SIGNATURES, StateSigner, verify


@pytest.fixture(autouse=True)
def own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "keys" / "sweep.key"
    monkeypatch.setenv(state_guard.KEY_ENV, str(key))
    return key


def experiment(tmp_path: Path) -> tuple[Path, Path]:
    sweep = tmp_path / "sweep"
    exp = sweep / "trials"
    (exp / "t1").mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"tuner-v1")
    (exp / "searcher-state-2026.pkl").write_bytes(b"searcher-v1")
    (exp / "experiment_state-2026.json").write_text('{"trials": 1}')
    (exp / "t1" / "error.pkl").write_bytes(b"error")
    (exp / "t1" / "result.json").write_text('{"epoch": 1}\n')
    return sweep, exp


def test_the_key_is_created_private_and_refused_when_others_can_read_it(own_key: Path) -> None:
    key = state_guard.load_key()
    assert len(key) == 64 and own_key.stat().st_mode & 0o777 == 0o600
    assert state_guard.load_key() == key
    own_key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users.*chmod 600"):
        state_guard.load_key()


def test_signed_state_verifies_and_only_changed_files_are_signed_again(tmp_path: Path) -> None:
    sweep, exp = experiment(tmp_path)
    signer = StateSigner()
    assert signer.sign(sweep, exp) is True
    signatures = json.loads((sweep / SIGNATURES).read_text())
    assert sorted(signatures) == ["trials/experiment_state-2026.json", "trials/searcher-state-2026.pkl",
                                  "trials/t1/error.pkl", "trials/tuner.pkl"]  # result.json is plain JSON
    assert signer.sign(sweep, exp) is False  # nothing changed
    (exp / "searcher-state-2026.pkl").write_bytes(b"searcher-v2")
    assert signer.sign(sweep, exp) is True
    assert (sweep / BACKUP_DIR / "trials" / "searcher-state-2026.pkl").read_bytes() == b"searcher-v2"
    assert verify(sweep, exp) == []


def test_a_file_cut_off_after_signing_is_replaced_by_its_last_signed_copy(tmp_path: Path) -> None:
    sweep, exp = experiment(tmp_path)
    StateSigner().sign(sweep, exp)
    state = exp / "experiment_state-2026.json"
    state.write_text('{"tri')  # what ENOSPC or a kill mid-write leaves
    notes = verify(sweep, exp)
    assert notes == [
        "trials/experiment_state-2026.json: did not match its signature (cut off?); its last signed copy restored"
    ]
    assert state.read_text() == '{"trials": 1}'
    assert (exp / "experiment_state-2026.json.rejected").read_text() == '{"tri'


def test_unsigned_newer_state_is_set_aside_and_a_foreign_tuner_pickle_is_refused(tmp_path: Path) -> None:
    sweep, exp = experiment(tmp_path)
    StateSigner().sign(sweep, exp)
    (exp / "searcher-state-2027.pkl").write_bytes(b"written after the last signature")
    assert verify(sweep, exp) == ["trials/searcher-state-2027.pkl: unsigned, set aside"]
    assert not (exp / "searcher-state-2027.pkl").exists()
    (exp / "tuner.pkl").write_bytes(b"someone else's code")
    os.remove(sweep / BACKUP_DIR / "trials" / "tuner.pkl")
    with pytest.raises(ConfigError, match=r"tuner.pkl' does not match its signature and has no good copy.*"
                                          r"--trust-state"):
        verify(sweep, exp)


def test_state_signed_under_another_key_or_not_at_all_is_refused(tmp_path: Path, own_key: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sweep, exp = experiment(tmp_path)
    with pytest.raises(ConfigError, match="no state-signatures.json"):
        verify(sweep, exp)
    StateSigner().sign(sweep, exp)
    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "other.key"))  # another user's key
    with pytest.raises(ConfigError, match="tuner.pkl"):
        verify(sweep, exp)
