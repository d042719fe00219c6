"""A loss with per-example state (ELR) resumes exactly: 4 epochs straight equal 2 epochs, a checkpoint,
and 2 more epochs in a fresh Engine, in every metric and in the loss's state."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from proselflc.config import build_run_config
from proselflc.training import Engine

TINY = {
    "name": "elr-resume",
    "data": {"limit": 300},
    "noise": {"kind": "symmetric", "rate": 0.4},
    "model": {"name": "mlp", "hidden": 16},
    "loss": {"name": "elr", "lambda": 3.0, "beta": 0.7},
    "optim": {"milestones": [3]},
    "train": {"epochs": 4, "batch_size": 64, "seed": 5, "progress": False, "threads": 1, "checkpoint_every": 2},
}


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_elr_resumed_run_equals_the_straight_run(tmp_path: Path) -> None:
    cfg = build_run_config(TINY)
    straight = Engine(cfg)
    assert straight.loss_fn.state.shape == (300, 10), "one row per training example"
    full = straight.run()

    first = Engine(cfg, run_dir=tmp_path / "run")
    epochs = first.epochs()
    for _ in range(2):
        next(epochs)
    epochs.close()
    first.writer.close()
    state_at_2 = first.loss_fn.state.clone()
    assert state_at_2.abs().sum() > 0 and not torch.equal(state_at_2, straight.loss_fn.state)

    resumed = Engine(cfg)
    resumed.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert torch.equal(resumed.loss_fn.state, state_at_2), "the checkpoint carries the running targets"
    history = resumed.run()

    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    for mine, theirs in zip(history, full):
        assert mine.keys() == theirs.keys()
        assert all(_same(mine[k], theirs[k]) for k in mine if k != "samples_per_s"), (mine, theirs)
    assert torch.equal(resumed.loss_fn.state, straight.loss_fn.state)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
