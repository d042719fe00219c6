"""When memorisation starts, read without clean labels: the first minimum of the prediction-changes curve.

Standard library only, like `proselflc.metric_table`: the training loop's scheduler (`tuning.onset_asha`), the
selection rule (`sweep_contract.reported_row`), the analysis and the benchmarks all call the one function here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

#: Label Wave's smoothing of the prediction-changes curve: a centred moving average over this many evaluated epochs.
ONSET_WINDOW = 3
#: A smoothed minimum counts only if no later value within this many evaluated epochs goes below it.
ONSET_PATIENCE = 3


def memorisation_onset(
    epochs: Sequence[int], changes: Sequence[float], window: int = ONSET_WINDOW, patience: int = ONSET_PATIENCE
) -> int | None:
    """The estimated epoch memorisation starts: the first minimum of the smoothed `prediction_changes` curve.

    Label Wave (Yuan et al., ICLR 2024): the share of training examples whose prediction changes falls while
    the model learns the clean patterns and rises once it starts fitting the noisy labels, so its first
    minimum needs no clean label. The curve is smoothed by a centred moving average of `window` values (fewer
    at the ends), and a minimum counts when the next smoothed value is higher and none of the next `patience`
    is lower. Non-finite values (a diverged epoch) are skipped. None: the
    curve never turns up (no memorisation seen in the run), or fewer than `window` finite values.
    """
    points = [(e, float(c)) for e, c in zip(epochs, changes, strict=True) if math.isfinite(float(c))]
    if len(points) < max(window, 2):
        return None
    values = [c for _, c in points]
    half = window // 2
    smooth = [statistics.fmean(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]
    for i in range(len(smooth) - 1):
        ahead = smooth[i + 1 : i + 1 + patience]
        if smooth[i + 1] > smooth[i] and min(ahead) >= smooth[i]:
            return points[i][0]
    return None


def onset_of(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """`memorisation_onset` of a run's per-epoch rows (their `epoch` and `prediction_changes`)."""
    usable = [r for r in rows if isinstance(r.get("epoch"), int | float) and isinstance(r.get("prediction_changes"),
                                                                                    int | float)]
    return memorisation_onset([int(r["epoch"]) for r in usable], [float(r["prediction_changes"]) for r in usable])
