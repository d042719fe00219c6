"""The real trial (`train_engine`) with a hook run after each of its reports, for test drivers that must hold a
trial at a known epoch (until a node is removed, until the driver is interrupted) instead of racing it.

Drivers run as scripts (`python tests/<driver>.py`), so Ray puts this directory on their trial workers' path
and a trial function defined there can import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proselflc.trainables import train_engine


def train_engine_with_hook(
    params: dict[str, Any], after_report: Callable[[dict[str, Any]], None] | None, **kwargs: Any
) -> None:
    """`train_engine(params, **kwargs)`, calling `after_report(metrics)` after each report when it is given.

    Only the timing changes: the Engine, its checkpoints and its metrics are untouched. Ray Tune's `report` is
    put back afterwards, since the actor runs later trials too.
    """
    from ray import tune

    report = tune.report
    if after_report is not None:

        def hooked(metrics: dict[str, Any], *args: Any, **options: Any) -> None:
            report(metrics, *args, **options)
            after_report(metrics)

        tune.report = hooked
    try:
        train_engine(params, **kwargs)
    finally:
        tune.report = report
