"""The sweep file: which base run, which noise rates, which methods and how hard to search each.

A sweep is validated completely before Ray starts: the base run config (inline or a run YAML, plus
`overrides`), every (noise rate, method) study's run config, and every search space's reachable
values. The resolved form (base inlined, overrides applied, storage path absolute, search spaces
expanded) is what `sweep.yaml` records, so `--resume` and the analysis never depend on files that
may have changed since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from proselflc import dotted, metric_table, search_spaces, storage
from proselflc.config import (
    RunConfig,
    StrictModel,
    build_run_config,
    check_noise_kind,
    check_safe_name,
    deep_merge,
    format_validation_error,
    is_noise_rate,
    parse_overrides,
    read_yaml,
)
from proselflc.errors import ConfigError, one_of, shown
from proselflc.sweep_contract import (
    EXPERIMENT_DIR,
    MANIFEST_FILE,
    SELECTABLE_METRICS,
    SWEEP_FILE,
    SelectionEpoch,
    rate_dir,
    uses_clean_labels,
)
from proselflc.training import METRIC_KEYS
from proselflc.tuning import search
from proselflc.tuning.loggers import LoggerSpec
from proselflc.tuning.search import AshaScheduler, SchedulerSpec, SearcherSpec, TpeSearcher


class NoiseSweep(StrictModel):
    """The noise axis of the sweep; other noise fields (matrix, allow_true_label, seed, file) come from `base.noise`.

    `label_sets` (human noise: CIFAR-N's annotations) makes one study per label set and rate, named
    `<kind>_<label set>-<rate>/<method>`, e.g. human_aggre-0/elr.
    """

    kind: str = "symmetric"
    rates: list[float] = Field(min_length=1)
    label_sets: list[str] | None = Field(None, min_length=1, description="human only: one study per CIFAR-N label set")

    _known_kind = field_validator("kind")(check_noise_kind)

    @field_validator("rates")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        bad = [r for r in value if not is_noise_rate(r)]
        if bad:
            raise ValueError(f"noise rates {bad} are outside [0, 1)")
        if len(set(value)) != len(value):
            raise ValueError(f"noise rates {value} repeat a rate")
        return value

    @field_validator("label_sets")
    @classmethod
    def _label_sets(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"label sets {value} repeat a label set")
        return value

    def settings(self) -> list[tuple[str, str | None]]:
        """(the study key's noise kind, label set or None) of each noise setting, in the sweep file's order."""
        if self.label_sets is None:
            return [(self.kind, None)]
        return [(f"{self.kind}_{label_set}", label_set) for label_set in self.label_sets]


class MethodSpec(StrictModel):
    """One method to compare: a loss, its fixed hyperparameters and the space searched around them."""

    name: str
    loss: str = ""
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Any] | str | None = Field(
        None, description="preset name, mapping of dotted keys to domains (optionally with 'preset'), or none"
    )

    @model_validator(mode="before")
    @classmethod
    def _loss_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("loss") and data.get("name"):
            data = {**data, "loss": data["name"]}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_safe_name(value, "method name")


#: A noisy sweep that names no early stopping gets ASHA whose first rung is at 3x the study's memorisation onset:
#: in the search-efficiency suite (BENCHMARKS.md) it ended nearest the grid best of the strategies measured, while
#: ASHA's fixed grace period of 1 epoch judged configurations on fit speed and ended up to 36 points below it.
NOISY_ONSET_FACTOR = 3.0
#: ASHA's settings, which the `scheduler:` section holds; in `asha:` they are the earlier form (`proselflc migrate`).
ASHA_SETTINGS = ("grace_period", "reduction_factor", "brackets")


class AshaSpec(StrictModel):
    """The trial length. ASHA's own settings are in `scheduler: {name: asha, ...}`; the earlier form of this
    section that held them is refused, naming `proselflc migrate`."""

    max_t: int | None = Field(None, ge=1, description="epochs per trial, whatever the scheduler; default: base.train.epochs")

    @model_validator(mode="before")
    @classmethod
    def _earlier_form(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and any(key in data for key in ASHA_SETTINGS):
            source = (info.context or {}).get("source")
            file = source if source and Path(source).is_file() else "FILE"
            moved = ", ".join(f"{key}: {data[key]}" for key in ASHA_SETTINGS if key in data)
            raise ValueError(
                f"{{{moved}}} is the earlier form of ASHA's settings; run `proselflc migrate {file}` to rewrite it "
                f"(as scheduler: {{name: asha, {moved}}}; asha keeps only max_t)"
            )
        return data


class SelectionSpec(StrictModel):
    """How a study's selected trial is reported (the choice itself is always `sweep_contract.select_best`'s)."""

    epoch: SelectionEpoch = Field(
        "last", description="last: the clean test accuracy at the trial's last epoch (the papers' protocol); "
                            "memorisation_onset: at its estimated memorisation onset (Label Wave, no clean labels)")


class ResourcesSpec(StrictModel):
    """What one trial reserves on one node; fractional GPUs pack several small trials on a GPU."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"gpu = {value}: fractions are allowed only up to 1 (Ray places whole GPUs above that)")
        return value


class SweepConfig(StrictModel):
    """A whole sweep: one Ray Tune study per (noise rate, method), then final-seed re-runs of each best config."""

    name: str
    plugins: list[str] = Field(
        default_factory=list, description="modules or .py files to import first, in the driver and in every trial"
    )
    base: RunConfig
    noise: NoiseSweep
    methods: list[MethodSpec] = Field(min_length=1)
    metric: str = "val_accuracy"
    mode: Literal["max", "min"] | None = Field(None, description="default: the metric's better direction")
    num_samples: int = Field(8, ge=1)
    time_budget_s: float | None = Field(
        None, gt=0, description="per study: no new search trial once its search has run this many seconds"
    )
    asha: AshaSpec = Field(default_factory=AshaSpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    scheduler: SchedulerSpec | None = Field(
        None, description="asha (default), median or fifo (none); default: ASHA with a grace period of 1 epoch, and "
                          "for a noisy sweep ASHA after 3x the memorisation onset (grace: onset)"
    )
    searcher: SearcherSpec = Field(default_factory=TpeSearcher)
    #: Set by the one validation of the studies and their spaces (`build_sweep_config`); see `spaces`.
    _spaces: dict[str, search_spaces.SearchSpace] | None = PrivateAttr(default=None)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="trials at once in the whole sweep; default: as many as the cluster holds at start"
    )
    max_concurrent_studies: int | None = Field(
        None, ge=1, description="studies searching or re-running at once; default: all; 1: one after another"
    )
    per_study_concurrency: int | None = Field(
        None, ge=1, description="a study's search trials in flight at once; default: its sampler's startup trials"
    )
    storage_path: Path | str = Field(
        Path("results"), description="local directory, or a URI Ray Tune accepts (s3://bucket/prefix, gs://...)"
    )
    final_seeds: int = Field(3, ge=0)
    final_include_val: bool = Field(
        False, description="final re-runs train on the whole noisy training set, validation split included"
    )
    checkpoint_every: int = Field(0, ge=0, description="epochs between trial checkpoints; 0: only the last epoch")
    max_failures: int = Field(1, ge=0, description="retries of a failed trial (from its last checkpoint)")
    loggers: list[LoggerSpec] = Field(
        default_factory=list, description="trackers every trial is also logged to, e.g. [mlflow]"
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve_base(cls, data: Any, info: ValidationInfo) -> Any:
        """Inline a base run YAML (relative to the sweep file) and apply `overrides` onto it."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        root = Path((info.context or {}).get("root", "."))
        if "base" not in data:
            raise ValueError(
                "base: missing; give a run YAML path (base: digits.yaml) or a mapping of run sections "
                "(data, model, optim, train, ...)"
            )
        base = data["base"]
        base_root = root
        if isinstance(base, str | Path):
            path = Path(base) if Path(base).is_absolute() else root / base
            try:
                base = read_yaml(path)
            except ConfigError as err:
                raise ValueError(f"base: {err}") from None
            base_root = path.parent
        overrides = _nested(data.pop("overrides", None))
        if isinstance(base, dict):
            base = deep_merge(base, overrides)
            label_sets = (data.get("noise") or {}).get("label_sets") if isinstance(data.get("noise"), dict) else None
            if label_sets and isinstance(label_sets, list) and isinstance(base.get("noise", {}), dict):
                # The base run is validated on its own: it stands for the first label set's studies.
                base = deep_merge({"noise": {"label_set": label_sets[0]}}, base)
            # The sweep's plugins join the base run's, so every trial worker imports them before its config.
            from proselflc import plugins

            sweep_plugins = plugins.resolve(data.get("plugins") or [], root)
            plugins.load(sweep_plugins)
            data["plugins"] = sweep_plugins
            own = plugins.resolve(base.get("plugins") or [], base_root, field="base.plugins")
            base = {**base, "plugins": list(dict.fromkeys([*sweep_plugins, *own]))}
        data["base"] = base
        methods = data.get("methods")
        if isinstance(methods, dict):
            data["methods"] = [{"name": k, **(v or {})} for k, v in methods.items()]
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_safe_name(value, "sweep name")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        value = one_of(value, METRIC_KEYS, "metric")
        if uses_clean_labels(value) or value not in SELECTABLE_METRICS:
            why = (
                "is computed with the clean labels, which a noisy-label study must not select on"
                if uses_clean_labels(value)
                else "does not judge a configuration (the metric table gives it no better direction)"
            )
            raise ValueError(
                f"metric {value!r} {why}; choose one computed on the noisy labels: {', '.join(SELECTABLE_METRICS)}"
            )
        return value

    @model_validator(mode="after")
    def _mode_follows_metric(self) -> SweepConfig:
        """Maximising a loss or minimising an accuracy selects the worst configuration: refuse it."""
        direction = metric_table.better(self.metric)
        if self.mode is None:
            self.mode = direction
        elif self.mode != direction:
            raise ValueError(
                f"mode {self.mode!r} for metric {self.metric!r}, whose better direction is {direction!r}: "
                f"omit mode (it follows the metric) or set mode: {direction}"
            )
        return self

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list[MethodSpec]) -> list[MethodSpec]:
        names = [m.name for m in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"method names {dupes} appear more than once")
        return value

    @field_validator("storage_path", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Path | str:
        """A URI is kept as written (Ray Tune and pyarrow resolve it); a local path is made absolute."""
        if isinstance(value, str) and storage.is_uri(value):
            return value.rstrip("/")
        if not isinstance(value, str | Path):  # ValueError: pydantic reports only that one as the field's error
            raise ValueError(  # noqa: TRY004
                f"expected a local path or a URI such as s3://bucket/prefix, got {value!r}"
            )
        return storage.local_path(value).expanduser().resolve()

    @model_validator(mode="after")
    def _grace_fits(self) -> SweepConfig:
        if self.scheduler_spec.grace_period > self.max_t:
            raise ValueError(
                f"scheduler.grace_period = {self.scheduler_spec.grace_period} exceeds the trial length {self.max_t}"
            )
        return self

    @property
    def scheduler_spec(self) -> search.AshaScheduler | search.MedianScheduler | search.FifoScheduler:
        """The early stopping in force: `scheduler`, else ASHA (after 3x the memorisation onset for a noisy sweep)."""
        if self.scheduler is not None:
            return self.scheduler
        if self.noisy:
            return AshaScheduler(grace="onset", onset_factor=NOISY_ONSET_FACTOR)
        return AshaScheduler()

    @property
    def noisy(self) -> bool:
        """Whether some study trains on noisy labels (a rate above 0, or human labels)."""
        return self.noise.kind == "human" or any(rate > 0 for rate in self.noise.rates)

    @property
    def max_t(self) -> int:
        """Epochs per trial (ASHA's max_t and the length of every search and final run)."""
        return self.asha.max_t or self.base.train.epochs

    @property
    def sweep_dir(self) -> Path | str:
        """`<storage_path>/<name>`: a Path, or a URI string when storage_path is one."""
        return storage.join(self.storage_path, self.name)

    @property
    def n_startup_trials(self) -> int:
        """Random trials before a model-based sampler models a study's results (default: a third, >= 2)."""
        if self.searcher.startup is not None:
            return self.searcher.startup
        return max(2, self.num_samples // 3)

    @property
    def study_concurrency(self) -> int:
        """A study's search trials in flight: few enough that its sampler learns from finished ones."""
        return self.per_study_concurrency or max(1, min(self.num_samples, self.n_startup_trials))

    def study_config(self, rate: float, method: MethodSpec, label_set: str | None = None) -> dict[str, Any]:
        """The base run config (as a dict) of the study (rate, method[, label set]): the dict trials apply their
        params onto."""
        raw = self.base.to_dict()
        kind = self.noise.kind if label_set is None else f"{self.noise.kind}_{label_set}"
        raw["name"] = f"{self.name}-{rate_dir(kind, rate)}-{method.name}"
        raw["noise"] = {**raw["noise"], "kind": self.noise.kind, "rate": rate}
        if label_set is not None:
            raw["noise"]["label_set"] = label_set
        raw["loss"] = {"name": method.loss, **method.hyperparameters}
        raw["train"] = {**raw["train"], "epochs": self.max_t, "progress": False}
        return raw

    @property
    def spaces(self) -> dict[str, search_spaces.SearchSpace]:
        """Each method's validated search space, from the one validation `build_sweep_config` ran.

        A sweep made another way (`model_validate`, a changed copy) is validated here, once, on first use.
        """
        if self._spaces is None:
            self._spaces = validate_studies(self)
        return self._spaces

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            self._spaces = None  # a changed sweep is validated again on first use

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> SweepConfig:
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied._spaces = None
        return copied

    def resolved(self, spaces: dict[str, search_spaces.SearchSpace]) -> dict[str, Any]:
        """YAML-safe dict that reloads to the same sweep, search spaces expanded: what `sweep.yaml` records."""
        out = self.model_dump(mode="json")
        # The scheduler in force, default or not: a later version's other default must not change a resumed sweep.
        out["scheduler"] = self.scheduler_spec.model_dump(mode="json")
        out["base"]["data"] = {**self.base.data.options_in_force(), **out["base"]["data"]}  # its options in force too
        for method in out["methods"]:
            method["search"] = {k: d.model_dump() for k, d in spaces[method["name"]].items()}
        return out


def _nested(overrides: Any) -> dict[str, Any]:
    """`overrides` as a nested dict: accepts `[key=value, ...]` or a mapping with dotted and/or nested keys."""
    if overrides is None:
        return {}
    if isinstance(overrides, list):
        return parse_overrides([str(o) for o in overrides])
    if not isinstance(overrides, dict):
        # ValueError, not TypeError: pydantic turns only ValueError into a field error with the value.
        raise ValueError(f"overrides must be a mapping or a list of key=value strings, got {overrides!r}")  # noqa: TRY004
    return dotted.nest(overrides)


def validate_studies(sweep: SweepConfig) -> dict[str, search_spaces.SearchSpace]:
    """Check every study's run config and every method's space; returns {method name: validated space}.

    Failing here, before Ray starts, names the method and the field instead of erroring trials later.
    """
    spaces: dict[str, search_spaces.SearchSpace] = {}
    for method in sweep.methods:
        where = f"methods.{method.name}"
        for _, label_set in sweep.noise.settings():
            at = "" if label_set is None else f" with label set {label_set!r}"
            for rate in sweep.noise.rates:
                build_run_config(sweep.study_config(rate, method, label_set), source=f"{where} at noise rate {rate:g}{at}")
        base = sweep.study_config(sweep.noise.rates[0], method, sweep.noise.settings()[0][1])
        spaces[method.name] = search_spaces.build_space(method.search, method.loss, base, f"{where}.search")
    search.check_spaces(sweep.searcher, sweep.num_samples, spaces)
    return spaces


def build_sweep_config(raw: dict[str, Any], source: str = "sweep", root: str | Path = ".") -> SweepConfig:
    """Validate a raw sweep dict (paths relative to `root`) into a SweepConfig, with ConfigError on problems."""
    try:
        sweep = SweepConfig.model_validate(raw, context={"root": str(root), "source": source})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    sweep._spaces = validate_studies(sweep)
    return sweep


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read a sweep YAML, apply `--set` overrides (e.g. num_samples=4, base.train.epochs=5), validate.

    `path` may name a sweep shipped with proselflc (`quickstart`, `paper/<name>`; `proselflc configs` lists them).

    `path` may be the sweep.yaml inside a sweep directory on object storage (`s3://.../<name>/sweep.yaml`):
    the sweep then lives there, as for a local sweep directory's own sweep.yaml.
    """
    from proselflc import examples

    path = examples.resolve(path)  # a file, a URI, or the name of a sweep shipped with proselflc (quickstart)
    remote = storage.resolve(path, "sweep") if isinstance(path, str) and storage.is_uri(path) else None
    path = Path(path) if remote is None else Path(remote.path)
    raw = read_yaml(path) if remote is None else storage.read_mapping(remote)
    updates = parse_overrides(overrides)
    base_updates = updates.pop("base", None)
    raw = deep_merge(raw, updates)
    if isinstance(base_updates, str):
        # `--set base=configs/digits.yaml`: another base file, as `base:` in the sweep file (a path relative to
        # the current directory, as typed); `base.x=...` overrides then go on top of it.
        raw["base"] = str(Path(base_updates).expanduser().resolve())
    elif base_updates is not None and not isinstance(base_updates, dict):
        raise ConfigError(f"--set base={shown(base_updates)}: base is a run YAML path or base.<section>.<key>=value")
    elif base_updates:
        # `--set base.x=...` must not replace a base given as a file path: route it through `overrides`.
        raw["overrides"] = deep_merge(_nested(raw.get("overrides")), base_updates)
    if remote is not None:
        raw["storage_path"] = str(remote.parent.parent)
        raw["name"] = remote.parent.name
        return build_sweep_config(raw, source=str(remote))
    if path.name == SWEEP_FILE and any((path.parent / name).exists() for name in (MANIFEST_FILE, EXPERIMENT_DIR)):
        # A sweep directory's own sweep.yaml: the sweep lives where that file is now (copied or moved, with or
        # without its manifest), never where it was first written.
        raw["storage_path"] = str(path.parent.resolve().parent)
        raw["name"] = path.parent.name
    return build_sweep_config(raw, source=str(path), root=path.parent)
