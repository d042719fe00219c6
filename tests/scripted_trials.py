"""Trial functions with scripted curves, in a module Ray's trial workers can import (`tests.scripted_trials`)."""

from __future__ import annotations

from typing import Any

#: Prediction changes that fall to a first smoothed minimum at epoch 6, then rise.
CHANGES = [1.0, 0.6, 0.4, 0.3, 0.25, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]


def scripted_trial(params: dict[str, Any], **_: Any) -> None:
    """A trial whose noisy val_accuracy is its lr at every epoch (lower lr: cut at a rung), curve as CHANGES."""
    from ray import tune

    for epoch, changes in enumerate(CHANGES, 1):
        tune.report({"epoch": epoch, "val_accuracy": params["optim.lr"], "test_accuracy": 0.5,
                     "prediction_changes": changes, "diverged": False})
