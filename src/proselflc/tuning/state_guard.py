"""Ray Tune's saved sweep state, signed while it is written and verified before `--resume` loads it.

Ray Tune restores a Tuner from pickles (`tuner.pkl`, `searcher-state-*.pkl`, the trial objects inside
`experiment_state-*.json`, `error.pkl`): loading a sweep directory someone else wrote would run their
code. So while a sweep runs, each time Ray saves its state the sweep's monitor copies that state, as one
consistent snapshot, into `<sweep>/.state-backup/<n>/` and signs every file (HMAC-SHA256 with a per-user
secret key, a file of mode 0600). Before a resume the snapshot must verify under the user's key, and
Ray's state files are made equal to it: a file that differs (cut off by a full disk or a kill, synced
late, or changed by someone) is set aside as `<name>.rejected` and replaced by its signed copy, so the
sweep resumes from its last consistent signed state (trials that finished after it are continued from
their checkpoints, not lost). Trials' pickled errors are set aside too (their error.txt stays). A
snapshot that does not verify refuses the resume, naming the file. `--trust-state` skips all this for a
directory the user vouches for.

One scheme, written through `storage.Location` for a local directory and object storage alike (which has
no renames): each snapshot is a new generation `.state-backup/<n>/` whose `signatures.json` is written last,
atomically: the newest generation that has it is the last complete snapshot, and older ones are deleted once
a newer one is complete. A kill mid-snapshot leaves a generation without signatures, which is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from fnmatch import fnmatch
from pathlib import Path

from proselflc import storage
from proselflc.errors import ConfigError

#: Where the per-user key lives unless PROSELFLC_KEY_FILE names another file.
KEY_ENV = "PROSELFLC_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/proselflc/sweep-state.key")
#: In the sweep directory: the last signed snapshot of Ray's state, with its signatures inside.
SNAPSHOT = ".state-backup"
SIGNATURES = "signatures.json"
#: Ray's top-level state files that it restores with (cloud)pickle, in the experiment directory.
_STATE = ("tuner.pkl", "experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


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


def state_files(directory: storage.Location) -> list[storage.Location]:
    """Ray's pickled state in an experiment (or staging) directory; the trials' checkpoints are not among
    them: the Engine loads those with `weights_only=True`."""
    if not directory.is_dir():
        return []
    found = (f for f in directory.iterdir() if any(fnmatch(f.name, p) for p in _STATE) and f.is_file())
    return sorted(found, key=lambda f: f.name)


def _digest(key: bytes, path: storage.Location) -> str:
    return hmac.new(key, path.read_bytes(), digestmod=hashlib.sha256).hexdigest()


def _generations(sweep_dir: storage.Location) -> list[storage.Location]:
    """The snapshot generations, newest first."""
    root = sweep_dir / SNAPSHOT
    found = [d for d in root.iterdir() if d.name.isdigit()] if root.is_dir() else []
    return sorted(found, key=lambda d: int(d.name), reverse=True)


def last_snapshot(sweep_dir: str | Path | storage.Location) -> storage.Location | None:
    """The newest complete snapshot (a kill mid-snapshot leaves a generation without signatures)."""
    sweep_dir = storage.as_dir(sweep_dir)
    return next((g for g in _generations(sweep_dir) if (g / SIGNATURES).is_file()), None)


class StateSigner:
    """Snapshots and signs Ray's state each time Ray saves it (called from the sweep's Tune callback, in the
    driver thread that also writes the state, so a snapshot never mixes two saves)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int] | None] = {}
        self._key: bytes | None = None

    def sign(
        self, sweep_dir: str | Path | storage.Location, staging: str | Path | storage.Location,
        experiment: str | Path | storage.Location,
    ) -> bool:
        """Snapshot and sign if Ray's state changed since the last call; True if it did.

        `staging` is the driver's staging directory, where Ray writes its state synchronously before
        syncing it to `experiment` (the storage directory, where `tuner.pkl` is written directly).
        """
        sweep_dir, staging, experiment = storage.as_dir(sweep_dir), storage.as_dir(staging), storage.as_dir(experiment)
        files = {p.name: p for p in state_files(staging) if p.name != "tuner.pkl"}
        stamps = {name: p.stamp() for name, p in files.items()}
        tuner = experiment / "tuner.pkl"
        # A stamp costs no request: on object storage (no stamp) only a changed staging file triggers a snapshot.
        tuner_stamp = tuner.stamp()
        if tuner_stamp is not None:
            stamps["tuner.pkl"] = tuner_stamp
        if not files or stamps == self._seen:
            return False
        self._key = self._key or load_key()
        if tuner.is_file():
            files["tuner.pkl"] = tuner
        older = _generations(sweep_dir)
        new = sweep_dir / SNAPSHOT / str(int(older[0].name) + 1 if older else 1)
        if new.exists():  # a generation a killed driver left without signatures
            new.remove_tree()
        new.mkdir()
        signatures = {}
        for name, source in files.items():
            data = source.read_bytes()  # sign the bytes stored: Ray may rewrite the source meanwhile
            (new / name).write_bytes(data)
            signatures[name] = hmac.new(self._key, data, digestmod=hashlib.sha256).hexdigest()
        (new / SIGNATURES).write_text(json.dumps(signatures, indent=1, sort_keys=True) + "\n")  # commits it
        for generation in older:
            generation.remove_tree()
        self._seen = stamps
        return True


def has_results(experiment: str | Path | storage.Location) -> bool:
    """Whether any trial of the experiment reported a result (there is work a fresh start would lose)."""
    experiment = storage.as_dir(experiment)
    return experiment.is_dir() and any((trial / "result.json").size() > 0 for trial in experiment.iterdir())


def has_snapshot(sweep_dir: str | Path | storage.Location) -> bool:
    return last_snapshot(sweep_dir) is not None


def verify(
    sweep_dir: str | Path | storage.Location, experiment: str | Path | storage.Location, *,
    snapshot: storage.Location | None = None, command: str = "--resume",
) -> list[str]:
    """Verify the last signed snapshot (or `snapshot`) and make Ray's state files equal to it; returns what was
    changed. `command` (what is about to load the state) names the step refused in the messages.

    Raises ConfigError, naming the file, when there is no snapshot or one of its files does not match its
    signature under this user's key.
    """
    sweep_dir, experiment = storage.as_dir(sweep_dir), storage.as_dir(experiment)
    snapshot = snapshot or last_snapshot(sweep_dir)
    step, refused = ("resume", "the resume") if command == "--resume" else (command, f"`proselflc {command}`")
    if snapshot is None:
        raise ConfigError(
            f"{command}: {str(sweep_dir)!r} has Ray Tune state but no signed snapshot ({SNAPSHOT}/): it was not "
            f"written by this proselflc, and loading its pickles can run code. If you trust the directory, {step} "
            "with --trust-state"
        )
    key = load_key()
    try:
        signatures: dict[str, str] = json.loads((snapshot / SIGNATURES).read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{command}: {str(snapshot / SIGNATURES)!r} is not valid JSON ({exc})") from None
    for name, expected in signatures.items():
        copy = snapshot / name
        if not copy.is_file():
            raise ConfigError(
                f"{command}: {str(copy)!r} is missing: the signed snapshot of Ray's state is incomplete (a copy made "
                "without its .pkl files?), so the sweep cannot be restored; its trials are kept. Copy the sweep "
                f"directory again with every file, or {step} with --trust-state if Ray's own state is complete"
            )
        if not hmac.compare_digest(_digest(key, copy), expected):
            raise ConfigError(
                f"{command}: {str(copy)!r} does not match its signature under your key ({key_file()}): the sweep "
                "was written by another user or changed since, and loading it with pickle can run code, so "
                f"{refused} is refused. Pass --trust-state only if you trust the directory"
            )
    changed = []
    for file in state_files(experiment):
        if file.name not in signatures or file.read_bytes() != (snapshot / file.name).read_bytes():
            file.move(file.parent / f"{file.name}.rejected")
            changed.append(file.name)
    restored = []
    for name in signatures:
        if not (experiment / name).is_file():
            (experiment / name).write_bytes((snapshot / name).read_bytes())
            restored.append(name)
    errors = [d / "error.pkl" for d in experiment.iterdir() if (d / "error.pkl").is_file()]
    for error in errors:
        error.move(error.parent / "error.pkl.rejected")
    notes = [f"{name}: not the last signed state (cut off, late or changed); set aside for the signed copy"
             for name in sorted(changed)]
    notes += [f"{name}: missing; put back from the signed snapshot" for name in sorted(restored)]
    if errors:
        notes.append(f"{len(errors)} trials' pickled errors set aside (their error.txt is kept)")
    return notes
