"""Ray Tune's saved sweep state, signed while it is written and verified before `--resume` loads it.

Ray Tune restores a Tuner from pickles (`tuner.pkl`, `searcher-state-*.pkl`, trial objects inside
`experiment_state-*.json`, `error.pkl`): loading a sweep directory someone else wrote would run their
code. So while a sweep runs, every such file is signed (HMAC-SHA256 with a per-user secret key, a file of
mode 0600) and a copy of each signed version is kept; before a resume, each file must match its signature.
A file that does not (truncated by a full disk, cut off by a kill, or changed by someone) is replaced by
its last signed copy, so the sweep resumes from a slightly older, consistent state (trials that finished
after it are continued from their checkpoints, not lost); a file with no good copy refuses the resume,
naming the file. `--trust-state` skips the check for a directory the user vouches for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
from pathlib import Path

from proselflc.config import ConfigError
from proselflc.io import atomic_write_text

#: Where the per-user key lives unless PROSELFLC_KEY_FILE names another file.
KEY_ENV = "PROSELFLC_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/proselflc/sweep-state.key")
#: In the sweep directory: the signatures and the last signed copy of each state file.
SIGNATURES = "state-signatures.json"
BACKUP_DIR = ".state-backup"
#: Ray's files that it restores with (cloud)pickle, relative to the experiment directory.
_PATTERNS = ("*.pkl", "experiment_state-*.json", "search_gen_state-*.json", "*/*.pkl")


def key_file() -> Path:
    return Path(os.environ.get(KEY_ENV) or DEFAULT_KEY_FILE).expanduser()


def load_key() -> bytes:
    """The per-user key, created (32 random bytes, mode 0600) on first use; refused if others can read it."""
    path = key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    if path.stat().st_mode & 0o077:
        raise ConfigError(
            f"the sweep-state key {str(path)!r} is readable by other users (mode {path.stat().st_mode & 0o777:o}); "
            f"run `chmod 600 {path}`"
        )
    return path.read_text().strip().encode()


def state_files(experiment: Path) -> list[Path]:
    """Ray's pickled state of an experiment directory (checkpoints are not among them: the Engine's load with
    `weights_only=True`)."""
    found = {p for pattern in _PATTERNS for p in experiment.glob(pattern) if p.is_file()}
    return sorted(p for p in found if BACKUP_DIR not in p.parts)


def _digest(key: bytes, path: Path) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            mac.update(block)
    return mac.hexdigest()


class StateSigner:
    """Signs an experiment's state files as Ray rewrites them (called from the sweep's Tune callback)."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, int]] = {}
        self._key: bytes | None = None

    def sign(self, sweep_dir: Path, experiment: Path) -> bool:
        """Sign and back up every state file that changed since the last call; True if anything changed."""
        files = state_files(experiment)
        stamps = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in files}
        if stamps == {p: self._seen.get(p) for p in files} and len(files) == len(self._seen):
            return False
        self._key = self._key or load_key()
        path = sweep_dir / SIGNATURES
        signatures: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
        backup = sweep_dir / BACKUP_DIR
        for file in files:
            if self._seen.get(file) == stamps[file]:
                continue
            rel = str(file.relative_to(sweep_dir))
            copy = backup / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_name(copy.name + ".tmp")
            shutil.copyfile(file, tmp)
            digest = _digest(self._key, tmp)  # sign the copy: the file itself may be rewritten meanwhile
            os.replace(tmp, copy)
            signatures[rel] = digest
        atomic_write_text(path, json.dumps(signatures, indent=1, sort_keys=True) + "\n")
        self._seen = stamps
        return True


def has_results(experiment: Path) -> bool:
    """Whether any trial of the experiment reported a result (there is work a fresh start would lose)."""
    return any(p.stat().st_size > 0 for p in experiment.glob("*/result.json"))


def verify(sweep_dir: Path, experiment: Path) -> list[str]:
    """Check every state file against its signature before Ray loads it; returns what was done, per file.

    A file that does not match its signature is replaced by its last signed copy when that copy matches.
    Without a good copy, a file Ray only needs in its newest version (experiment, searcher and generator
    state, which Ray rewrites under new names, and a trial's pickled error) is set aside as
    `<name>.rejected`, so Ray resumes from the newest state that is signed; an unverifiable `tuner.pkl`
    refuses the resume, naming the file.
    """
    key = load_key()
    path = sweep_dir / SIGNATURES
    if not path.is_file():
        raise ConfigError(
            f"--resume: {str(sweep_dir)!r} has Ray Tune state but no {SIGNATURES}: it was not written by this "
            "proselflc under your key, and Ray would load its pickles (which can run code). If you trust the "
            "directory, resume with --trust-state"
        )
    try:
        signatures = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--resume: {str(path)!r} is not valid JSON ({exc}); resume with --trust-state only if you trust "
            "the directory"
        ) from None
    done = []
    for file in state_files(experiment):
        rel = str(file.relative_to(sweep_dir))
        expected = signatures.get(rel)
        if expected is not None and hmac.compare_digest(_digest(key, file), expected):
            continue
        copy = sweep_dir / BACKUP_DIR / rel
        aside = file.with_name(file.name + ".rejected")
        if expected is not None and copy.is_file() and hmac.compare_digest(_digest(key, copy), expected):
            os.replace(file, aside)
            shutil.copyfile(copy, file)
            done.append(f"{rel}: did not match its signature (cut off?); its last signed copy restored")
        elif file.name != "tuner.pkl":
            os.replace(file, aside)
            done.append(f"{rel}: {'unsigned' if expected is None else 'not matching'}, set aside")
        else:
            why = "is not signed" if expected is None else "does not match its signature and has no good copy"
            raise ConfigError(
                f"--resume: {str(file)!r} {why} (written by someone else, or changed since): Ray would load it "
                "with pickle, which can run code, so the resume is refused. Resume with --trust-state only if "
                "you trust the directory"
            )
    return done
