"""ASHA that does not judge before memorisation: its rungs start at the study's estimated memorisation onset.

Under label noise the configurations that fit fastest early are the ones that memorise, so a rung placed
before memorisation starts cuts configurations on fit speed alone (BENCHMARKS.md, search_efficiency). This is
Ray Tune's ASHAScheduler with one change, where its rungs are: it stops nothing until the study's first
`onset_trials` trials have run to full length, estimates from their `prediction_changes` curves (no clean
labels: `proselflc.memorisation.memorisation_onset`) the epoch memorisation starts, and then places ASHA's rungs at
max(grace_period, onset * onset_factor) * reduction_factor^k. Those first trials are recorded at the new rungs as if the rungs
had been there all along; from then on it is ASHA. A curve with no minimum (no memorisation seen) puts the first
rung at max_t: the study runs without early stopping. Its state is plain data, so it pickles with the Tuner's.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ray.tune.schedulers import ASHAScheduler

from proselflc import ray_compat
from proselflc.memorisation import memorisation_onset

#: The per-epoch metric the onset is read from (the Engine reports it; see `proselflc.metric_table`).
SIGNAL = "prediction_changes"


class OnsetASHAScheduler(ASHAScheduler):
    """ASHA whose first rung waits for the study's estimated memorisation onset; see the module docstring."""

    def __init__(self, *, time_attr: str, metric: str, mode: str, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3.0, brackets: int = 1, onset_trials: int = 1,
                 onset_factor: float = 1.0) -> None:
        # Built with its only rung at max_t: until the onset is known, no trial is stopped before the end.
        super().__init__(time_attr=time_attr, metric=metric, mode=mode, max_t=max_t, grace_period=max_t,
                         reduction_factor=reduction_factor, brackets=brackets)
        self.min_grace = grace_period
        self.onset_trials = onset_trials
        self.onset_factor = onset_factor
        self.sign = 1.0 if mode == "max" else -1.0
        #: trial id -> [(epoch, signed metric, signal)] of the trials seen before the onset was placed.
        self.curves: dict[str, list[tuple[int, float, float]]] = {}
        #: Onsets of the full-length trials so far (max_t where a curve had no minimum), until placed.
        self.onsets: list[int] = []
        #: The study's estimated onset (epoch) once placed; the first rung is max(grace_period, onset).
        self.onset: int | None = None
        self.first_rung: int | None = None

    def _record(self, trial_id: str, result: dict[str, Any]) -> None:
        if self.onset is None and self._time_attr in result and self._metric in result:
            signal = result.get(SIGNAL)
            self.curves.setdefault(trial_id, []).append(
                (int(result[self._time_attr]), self.sign * float(result[self._metric]),
                 float(signal) if isinstance(signal, int | float) else math.nan))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self._record(trial.trial_id, result)
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        curve = self.curves.get(trial.trial_id, [])
        if self.onset is not None or not curve or curve[-1][0] < self._max_t:
            return
        onset = memorisation_onset([e for e, _, _ in curve], [s for _, _, s in curve])
        self.onsets.append(self._max_t if onset is None else onset)
        if len(self.onsets) >= self.onset_trials:
            self.place(int(statistics.median_low(self.onsets)))

    def place(self, onset: int) -> None:
        """Put the first rung at max(grace_period, onset * onset_factor) and record the trials seen so far there."""
        self.onset = onset
        self.first_rung = min(self._max_t, max(self.min_grace, math.ceil(onset * self.onset_factor)))
        running = set(self._trial_info)
        completed = {tid: [(e, v) for e, v, _ in c] for tid, c in self.curves.items() if tid not in running}
        ray_compat.place_asha_rungs(self, self.first_rung, completed)
        self.curves = {}

    def debug_string(self) -> str:
        where = "waiting for a full-length trial" if self.onset is None else f"onset {self.onset}, first rung " \
            f"{self.first_rung}"
        return f"ASHA after memorisation onset ({where})\n{super().debug_string()}"
