"""Search strategies: which Optuna sampler suggests a study's trials, and which scheduler stops them early.

The sweep file names them (`searcher: {name: tpe}`, `scheduler: {name: asha}`); this module is the one
place that turns those sections into the per-study factories `StudySearcher` and `StudyScheduler` call
for every (noise rate, method) study. A new strategy is one config model here plus its entry in
`SEARCHERS` or `SCHEDULERS`.

Every searcher is an Optuna sampler behind Ray Tune's `OptunaSearch`, seeded from `searcher.seed`, so a
sweep's suggestions are reproducible and each study's sampler learns only from its own trials. Every
scheduler is per study too: a rung or a median compares trials of one noise rate and one method.

Refused, with the reason in the error (and in docs/tune.md):
- `hyperband`: Ray's synchronous HyperBand PAUSES a trial until every trial of its bracket reaches the
  same milestone. A study's searcher deals a new trial only when one of its trials in flight ends, so
  the paused trials hold the study's slots and the bracket waits for trials that are never dealt. The
  asynchronous HyperBand, ASHA with `brackets: N`, needs no pausing and is the one to use.
- `pbt`: Population Based Training mutates a running trial's hyperparameters when it continues from
  another trial's checkpoint. The Engine restores a checkpoint exactly (optimiser state with its lr,
  weight decay and momentum, lr schedule, loss state), so a mutated lr or loss setting would be silently
  overwritten, and model keys (widths) cannot change mid-run at all.
"""

from __future__ import annotations

import abc
import collections
import functools
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import optuna
from pydantic import BeforeValidator, Discriminator, Field, Tag, ValidationInfo, model_validator
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule, TrialScheduler

from proselflc.config import StrictModel
from proselflc.errors import ConfigError, closest
from proselflc.search_spaces.domains import Choice
from proselflc.tuning.onset_asha import OnsetASHAScheduler
from proselflc.tuning.studies import SamplerFactory, SchedulerFactory, StudyPlan

if TYPE_CHECKING:
    from proselflc.search_spaces import SearchSpace

#: Time attribute every scheduler counts in: the epoch each trial reports.
TIME_ATTR = "epoch"


# -- searchers -----------------------------------------------------------------------------------------


class _Searcher(StrictModel, abc.ABC):
    seed: int = Field(0, description="seeds every study's sampler: a sweep's suggestions are reproducible")

    @abc.abstractmethod
    def sampler(self, plan: StudyPlan, startup: int) -> optuna.samplers.BaseSampler:
        """A fresh sampler for one study (`startup`: its random trials before a model-based one models)."""

    def check(self, where: str, space: SearchSpace) -> None:
        """Refuse a study's space this sampler cannot search (ConfigError naming the keys)."""

    @property
    def startup(self) -> int | None:
        """The random trials the sweep file set before modelling; None: the sweep's default."""
        return getattr(self, "n_startup_trials", None)


_STARTUP = Field(None, ge=0, description="random trials before the sampler models the results; "
                                         "default: num_samples // 3, at least 2")


class TpeSearcher(_Searcher):
    """Optuna's TPE (the default): models good and bad trials separately; strong on mixed spaces."""

    name: Literal["tpe"] = "tpe"
    n_startup_trials: int | None = _STARTUP
    multivariate: bool = Field(False, description="model the keys jointly instead of one by one")
    group: bool = Field(False, description="with multivariate: model keys that appear together as a group")

    @model_validator(mode="after")
    def _group_needs_multivariate(self) -> TpeSearcher:
        if self.group and not self.multivariate:
            raise ValueError("group = true needs multivariate = true (Optuna's TPE groups only joint models)")
        return self

    def sampler(self, plan: StudyPlan, startup: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():  # multivariate and group are "experimental" since Optuna 2.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=startup, multivariate=self.multivariate, group=self.group
            )


class RandomSearcher(_Searcher):
    """Independent uniform draws: the honest baseline every model-based sampler must beat."""

    name: Literal["random"] = "random"

    def sampler(self, plan: StudyPlan, startup: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.seed)


class _ExhaustiveGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its `study.stop()` once the grid is used up.

    `stop()` only works inside `Study.optimize`, which Ray Tune never runs (it asks and tells); the
    study's trial count, set to the grid's size, ends the search instead.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


class GridSearcher(_Searcher):
    """Every combination of the `choice` values, once each: the papers' protocol.

    Each study runs exactly its grid (its size is the study's trial count); `num_samples` must equal
    the largest study grid, so the sweep file states what runs. The seed only shuffles the order.
    """

    name: Literal["grid"] = "grid"

    def check(self, where: str, space: SearchSpace) -> None:
        continuous = sorted(k for k, d in space.items() if not isinstance(d, Choice))
        if continuous:
            raise ConfigError(
                f"{where}: searcher grid needs every searched key to be a choice (an explicit list of values); "
                f"{', '.join(continuous)} {'is' if len(continuous) == 1 else 'are'} not: give "
                "{type: choice, values: [...]} or use a sampler for continuous ranges (tpe, random, cmaes, gp, qmc)"
            )

    def sampler(self, plan: StudyPlan, startup: int) -> optuna.samplers.BaseSampler:
        grid = {key: list(dist.choices) for key, dist in plan.distributions.items()}
        return _ExhaustiveGridSampler(grid, seed=self.seed)


def grid_size(space: SearchSpace) -> int:
    """How many trials a grid study runs: the product of its choices' lengths (1 for a fixed config)."""
    return math.prod(len(d.values) for d in space.values() if isinstance(d, Choice))


class CmaesSearcher(_Searcher):
    """CMA-ES: an evolution strategy for continuous (and integer) keys; categorical keys are drawn at random."""

    name: Literal["cmaes"] = "cmaes"
    n_startup_trials: int | None = _STARTUP

    def check(self, where: str, space: SearchSpace) -> None:
        categorical = sorted(k for k, d in space.items() if isinstance(d, Choice))
        if space and len(categorical) == len(space):
            raise ConfigError(
                f"{where}: searcher cmaes models numeric keys, but every searched key here is categorical (choice): "
                f"{', '.join(categorical)}; Optuna's CMA-ES would draw them all at random. Use tpe, gp or grid for "
                "this space, or search a numeric range"
            )

    def sampler(self, plan: StudyPlan, startup: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.CmaEsSampler(seed=self.seed, n_startup_trials=startup)


class GpSearcher(_Searcher):
    """Optuna's Gaussian-process Bayesian optimisation: sample-efficient on a few continuous keys."""

    name: Literal["gp"] = "gp"
    n_startup_trials: int | None = _STARTUP

    def sampler(self, plan: StudyPlan, startup: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=startup)


class QmcSearcher(_Searcher):
    """Quasi-Monte Carlo (Sobol or Halton): random search that covers the space more evenly."""

    name: Literal["qmc"] = "qmc"
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = Field(True, description="randomise the sequence with the seed (false: the plain sequence)")

    def sampler(self, plan: StudyPlan, startup: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.0, on every study of every sweep
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type=self.qmc_type, scramble=self.scramble, seed=self.seed)


SEARCHERS: dict[str, type[_Searcher]] = {
    "tpe": TpeSearcher,
    "random": RandomSearcher,
    "grid": GridSearcher,
    "cmaes": CmaesSearcher,
    "gp": GpSearcher,
    "qmc": QmcSearcher,
}


def _searcher_input(raw: Any, info: ValidationInfo) -> Any:
    """Name check with a 'did you mean'; the earlier form `{name: optuna, sampler: S}` is refused, naming migrate."""
    if not isinstance(raw, dict):
        return raw
    raw = dict(raw)
    if raw.get("name") == "optuna" or "sampler" in raw:
        source = (info.context or {}).get("source")
        file = source if source and Path(source).is_file() else "FILE"
        given = ", ".join(f"{key}: {raw[key]}" for key in ("name", "sampler") if key in raw)
        raise ValueError(
            f"{{{given}}} is the earlier form of the searcher "
            f"section; run `proselflc migrate {file}` to rewrite it (as searcher: {{name: "
            f"{raw.get('sampler') or 'tpe'}}})"
        )
    name = raw.setdefault("name", "tpe")
    if name not in SEARCHERS:
        raise ValueError(f"unknown searcher {name!r}; {closest(str(name), tuple(SEARCHERS))}")
    return raw


def _name(value: Any) -> Any:
    """The tag a strategy section is validated by (StrictModel's checks rule out a plain discriminator field)."""
    return value.get("name") if isinstance(value, dict) else getattr(value, "name", None)


SearcherSpec = Annotated[
    Annotated[TpeSearcher, Tag("tpe")] | Annotated[RandomSearcher, Tag("random")] | Annotated[GridSearcher, Tag("grid")]
    | Annotated[CmaesSearcher, Tag("cmaes")] | Annotated[GpSearcher, Tag("gp")] | Annotated[QmcSearcher, Tag("qmc")],
    Discriminator(_name),
    BeforeValidator(_searcher_input),
]


# -- schedulers ----------------------------------------------------------------------------------------


class _Scheduler(StrictModel, abc.ABC):
    grace_period: int = Field(1, ge=1, description="epochs every trial trains before it can be stopped")

    @abc.abstractmethod
    def make(self, metric: str, mode: str, max_t: int) -> TrialScheduler | None:
        """A fresh scheduler for one study; None: no early stopping."""


class AshaScheduler(_Scheduler):
    """ASHA (the default): at grace_period * reduction_factor^k epochs, only the top 1/reduction_factor go on.

    brackets > 1 is asynchronous HyperBand: brackets with later first rungs hedge against a grace
    period that is too short to tell good configurations from bad. grace: onset places the rungs after the
    study's estimated memorisation onset instead (`tuning.onset_asha`): under label noise a rung before it
    judges configurations on how fast they fit, which favours the ones that will memorise.
    """

    name: Literal["asha"] = "asha"
    reduction_factor: float = Field(3.0, gt=1.0)
    brackets: int = Field(1, ge=1)
    grace: Literal["fixed", "onset"] = Field(
        "fixed", description="onset: no rung before the study's estimated memorisation onset (read from its first "
                             "full-length trials' prediction_changes); grace_period is then the earliest first rung")
    onset_trials: int = Field(1, ge=1, description="with grace: onset, the full-length trials the onset is read from")
    onset_factor: float = Field(1.0, ge=1.0, description="with grace: onset, the first rung is at onset x this "
                                                          "(memorisation shows in noisy validation some epochs after its onset)")

    def make(self, metric: str, mode: str, max_t: int) -> TrialScheduler | None:
        if self.grace == "onset":
            return OnsetASHAScheduler(time_attr=TIME_ATTR, metric=metric, mode=mode, max_t=max_t,
                                      grace_period=self.grace_period, reduction_factor=self.reduction_factor,
                                      brackets=self.brackets, onset_trials=self.onset_trials,
                                      onset_factor=self.onset_factor)
        return ASHAScheduler(time_attr=TIME_ATTR, metric=metric, mode=mode, max_t=max_t,
                             grace_period=self.grace_period, reduction_factor=self.reduction_factor,
                             brackets=self.brackets)


def _never_paused() -> float:
    return float("-inf")


class _PicklableMedianStoppingRule(MedianStoppingRule):
    """Ray's median stopping rule with its last-pause times in a picklable mapping.

    A study's scheduler is saved with the searcher (`StudySearcher.scheduling`) so that a resumed sweep stops
    the same trials; Ray's own keeps them in a defaultdict of a lambda, which cannot be pickled.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_pause = collections.defaultdict(_never_paused, self._last_pause)


class MedianScheduler(_Scheduler):
    """The median stopping rule: stop a trial whose best result so far is below the median of the
    running averages of the study's other trials at the same epoch."""

    name: Literal["median"] = "median"
    min_samples_required: int = Field(3, ge=1, description="trials that must have reached an epoch to judge it")

    def make(self, metric: str, mode: str, max_t: int) -> TrialScheduler | None:
        # An infinite time slice: never PAUSE a trial for lack of samples (a paused trial would hold its
        # study's slots, see the module docstring); it simply continues until there are enough.
        return _PicklableMedianStoppingRule(time_attr=TIME_ATTR, metric=metric, mode=mode, grace_period=self.grace_period,
                                  min_samples_required=self.min_samples_required, min_time_slice=math.inf,
                                  hard_stop=True)


class FifoScheduler(_Scheduler):
    """No early stopping: every search trial trains for max_t epochs (pair with grid for a paper's protocol)."""

    name: Literal["fifo"] = "fifo"

    def make(self, metric: str, mode: str, max_t: int) -> TrialScheduler | None:
        return None


SCHEDULERS: dict[str, type[_Scheduler]] = {"asha": AshaScheduler, "median": MedianScheduler, "fifo": FifoScheduler}

#: Schedulers Ray Tune has that a sweep refuses, and why (see the module docstring).
REFUSED_SCHEDULERS = {
    "hyperband": (
        "Ray's HyperBand pauses trials until their whole bracket reaches a milestone, but a study deals a new "
        "trial only when one of its own ends, so paused trials would wait for a bracket that never fills; use "
        "{name: asha, brackets: 3}, HyperBand's asynchronous form"
    ),
    "pbt": (
        "PBT changes a trial's hyperparameters when it continues from another trial's checkpoint, but the "
        "Engine restores a checkpoint exactly (optimiser lr/weight decay/momentum, schedule, loss state), "
        "so a mutated value would be silently overwritten; use asha, median or fifo"
    ),
}


def _scheduler_input(raw: Any) -> Any:
    if isinstance(raw, dict):
        name = raw.get("name", "asha")
        if name in REFUSED_SCHEDULERS:
            raise ValueError(f"scheduler {name!r} is not supported: {REFUSED_SCHEDULERS[name]}")
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; {closest(str(name), tuple(SCHEDULERS))}")
        raw = {**raw, "name": name}
    return raw


SchedulerSpec = Annotated[
    Annotated[AshaScheduler, Tag("asha")] | Annotated[MedianScheduler, Tag("median")]
    | Annotated[FifoScheduler, Tag("fifo")],
    Discriminator(_name),
    BeforeValidator(_scheduler_input),
]


# -- the sweep's factories -----------------------------------------------------------------------------


def check_spaces(searcher: _Searcher, num_samples: int, spaces: dict[str, SearchSpace]) -> None:
    """Refuse, before Ray starts, a space `searcher` cannot search or a grid `num_samples` does not fit."""
    for name, space in spaces.items():
        searcher.check(f"methods.{name}.search", space)
    if isinstance(searcher, GridSearcher):
        sizes = {name: grid_size(space) for name, space in spaces.items()}
        largest = max(sizes.values())
        if num_samples != largest:
            listing = ", ".join(f"{name}: {size}" for name, size in sizes.items())
            raise ConfigError(
                f"num_samples = {num_samples}, but searcher grid runs every combination of each study's "
                f"choices ({listing}); set num_samples: {largest}, the largest grid (a smaller grid runs just "
                "its own combinations)"
            )


def study_samples(searcher: _Searcher, space: SearchSpace) -> int | None:
    """A study's trial count when it is not num_samples (a grid's size); None: num_samples."""
    return grid_size(space) if isinstance(searcher, GridSearcher) and space else None


def sampler_factory(searcher: _Searcher, startup: int) -> SamplerFactory:
    """What makes each study's sampler. Every study gets the same seed: its suggestions depend on its own trials."""
    return functools.partial(searcher.sampler, startup=startup)


def scheduler_factory(scheduler: _Scheduler, metric: str, mode: str, max_t: int) -> SchedulerFactory | None:
    """What makes each study's scheduler; None: none stops a trial early (fifo)."""
    make = functools.partial(scheduler.make, metric, mode, max_t)
    return None if make() is None else make  # partials pickle with the Tuner's state; lambdas would not
