"""The computed views of one sweep (`Report`): what every export and the HTML page are written from.

It sits below `report` (which computes and writes it) and `page` (which renders it), so that neither
imports the other for the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from proselflc.analysis.progress import SweepProgress
from proselflc.analysis.tables import ResultsTable


@dataclass
class Report:
    """The computed views of one sweep and the files written for them."""

    trials: pd.DataFrame
    best: pd.DataFrame
    table: ResultsTable
    oracle: ResultsTable
    importance: pd.DataFrame
    cost: pd.DataFrame
    dynamics: pd.DataFrame
    #: rows noise rates, columns methods, cells 'noisy_fit / noisy_corrected' (%): see `memorisation_table`.
    memorisation: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: rows noise rates, columns methods, cells 'P(beats runner-up) · n_eff': see `certainty_table`.
    certainty: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: list[Path] = field(default_factory=list)
    #: each study's status: a running or stopped sweep's exports are marked PARTIAL.
    progress: SweepProgress | None = None
    #: published vs. reproduced numbers (`--published FILE`), see `analysis.published`.
    published: pd.DataFrame | None = None
    #: per method, the one config best on average over the noise settings: see `analysis.robust`.
    robust: pd.DataFrame = field(default_factory=pd.DataFrame)

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tidy views exported as one CSV file or Excel sheet each, by name."""
        frames = {
            "best_configs": self.best,
            "memorisation": self.memorisation.reset_index(),
            "certainty": self.certainty.reset_index(),
            "importance": self.importance,
            "search_cost": self.cost,
            "trials": self.trials,
            "dynamics": self.dynamics,
            "robust_across_rates": self.robust,
        }
        return frames if self.published is None else {**frames, "published_vs_reproduced": self.published}
