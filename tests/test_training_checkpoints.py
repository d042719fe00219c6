"""One rule (`Engine.checkpoint_due`) decides when a run's state is saved, in a run directory and in a Ray
trial (which passes its sweep's checkpoint_every): periodically, at the last epoch, and where it diverged."""

from __future__ import annotations

from pathlib import Path

from proselflc.config import build_run_config
from proselflc.training import Engine

TINY = {
    "name": "tiny",
    "data": {"limit": 300},
    "noise": {"kind": "symmetric", "rate": 0.4},
    "model": {"name": "mlp", "hidden": 16},
    "train": {"epochs": 4, "batch_size": 64, "seed": 3, "progress": False, "threads": 1},
}


def test_periodic_and_last_epoch_checkpoints(tmp_path: Path) -> None:
    raw = {**TINY, "train": {**TINY["train"], "checkpoint_every": 3}}
    engine = Engine(build_run_config(raw), run_dir=tmp_path)
    assert [engine.checkpoint_due(e) for e in (1, 2, 3, 4)] == [False, False, True, True]
    assert [engine.checkpoint_due(e, every=2) for e in (1, 2, 3, 4)] == [False, True, False, True]
    assert [engine.checkpoint_due(e, every=0) for e in (1, 2, 3, 4)] == [False, False, False, True]
    saved = [_epoch_in(engine, tmp_path / "checkpoint.pt") for _ in engine.epochs()]
    assert saved == [None, None, 3, 4], "the run directory's checkpoints follow the same rule"


def _epoch_in(engine: Engine, checkpoint: Path) -> int | None:
    """The epoch a checkpoint file holds, read back through a fresh Engine (None before the first one)."""
    if not checkpoint.is_file():
        return None
    fresh = Engine(engine.cfg)
    fresh.load_checkpoint(checkpoint)
    return fresh.epoch


def test_a_diverged_epoch_is_checkpointed_whatever_the_period() -> None:
    raw = {**TINY, "optim": {"lr": 1e6, "warmup_epochs": 0, "momentum": 0.99}, "train": {**TINY["train"], "epochs": 8}}
    engine = Engine(build_run_config(raw))
    last = engine.run()[-1]
    assert last["diverged"] and last["epoch"] < 4
    assert engine.checkpoint_due(last["epoch"], every=0), "a diverged run ends here: its state is saved"
    assert not engine.checkpoint_due(last["epoch"] + 1, every=0), "only the epoch that diverged counts"
