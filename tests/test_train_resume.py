"""`proselflc train --resume` against the run's stored config.yaml, through the real CLI entry point."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from proselflc.cli import main
from proselflc.config import load_run_config
from proselflc.training import Engine
from proselflc.training.engine import RESUME_MAY_CHANGE

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = ["loss.name=proselflc", "train.epochs=3", "optim.milestones=[2]", "train.progress=false",
        "train.checkpoint_every=1", "data.limit=400"]


@pytest.fixture
def interrupted(tmp_path: Path) -> Path:
    """A 3-epoch ProSelfLC run on digits stopped after its checkpointed epoch 1."""
    out = tmp_path / "run"
    engine = Engine(load_run_config(CONFIGS / "digits.yaml", BASE), run_dir=out)
    next(engine.epochs())
    engine.writer.close()
    return out


def _train(out: Path, *overrides: str) -> int:
    sets = [arg for item in [*BASE, *overrides] for arg in ("--set", item)]
    return main(["train", str(CONFIGS / "digits.yaml"), "--out", str(out), *sets, "--resume"])


def _epochs(out: Path) -> list[int]:
    with open(out / "metrics.csv") as fh:
        return [int(row["epoch"]) for row in csv.DictReader(fh)]


@pytest.mark.parametrize(
    "overrides, listed",
    [
        (["train.epochs=6"], ["train.epochs: 3 -> 6"]),
        (["loss.exp_base=4", "noise.rate=0.2"], ["noise.rate: 0.4 -> 0.2", "loss.exp_base: 16.0 -> 4"]),
        (["model.hidden=32", "data.val_fraction=0.2"], ["data.val_fraction: 0.1 -> 0.2", "model.hidden: 128 -> 32"]),
        (["loss.name=crossentropy"], ["loss.name: 'proselflc' -> 'crossentropy'"]),
    ],
)
def test_changes_that_would_corrupt_the_run_are_refused(interrupted, capsys, overrides, listed):
    stored = (interrupted / "config.yaml").read_text()
    assert _train(interrupted, *overrides) == 2
    err = capsys.readouterr().err
    assert "was trained with another config, and these changes would corrupt it" in err
    for line in listed:
        assert line in err
    assert "A resume may change only: name, data.root" in err
    assert (interrupted / "config.yaml").read_text() == stored and _epochs(interrupted) == [1]  # nothing touched


def test_allowed_changes_resume_and_are_reported(interrupted, capsys):
    assert _train(interrupted, "train.threads=1", "train.eval_every=2") == 0
    err = capsys.readouterr().err
    assert "with a changed train.threads: None -> 1" in err and "with a changed train.eval_every: 1 -> 2" in err
    assert _epochs(interrupted) == [1, 2, 3]  # eval_every 2 evaluates epoch 2 and the last one
    assert {"train.progress", "train.threads"} <= set(RESUME_MAY_CHANGE)


def test_an_unchanged_resume_says_nothing(interrupted, capsys):
    assert _train(interrupted) == 0
    assert "changed" not in capsys.readouterr().err
    assert _epochs(interrupted) == [1, 2, 3]
