"""Typed run configuration: YAML in, validated pydantic models out.

Config is data: the CLI, the Engine and the tuning layer all read these models, never raw dicts,
so a typo in a YAML file is caught once, here, with the field path and what is allowed.
"""

from __future__ import annotations

import itertools
import math
import re
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from proselflc import dotted, safe_yaml
from proselflc.dataset_registry import DATASETS
from proselflc.dotted import deep_merge
from proselflc.errors import ConfigError, clip, closest, one_of, shown  # noqa: F401  (closest, one_of: re-exported)
from proselflc.noise import NOISE_KINDS

# Each section's names and options belong to its registry (losses.LOSSES, models.MODELS,
# dataset_registry.DATASETS, noise.NOISE_KINDS); the sections below ask the registry to check them.


def check_noise_kind(kind: str) -> str:
    """A known noise kind, or a ConfigError listing them (shared by run and sweep configs)."""
    return NOISE_KINDS.entry(kind).name


def is_noise_rate(rate: float) -> bool:
    """Noise rates live in [0, 1): a rate of 1 would leave no clean label to learn from."""
    return 0.0 <= rate < 1.0


#: Most torch intra-op threads a run may ask for: far above any machine's cores, far below the counts
#: (about 100,000) at which creating the thread pool crashes the process.
MAX_THREADS = 1024

#: Run and sweep names become directory names: no path separators, no '..', nothing hidden.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_safe_name(value: str, what: str) -> str:
    """`value` if it is a plain directory name, else a ValueError (nothing may be written outside its parent)."""
    if not SAFE_NAME.match(value):
        raise ValueError(f"{what} {value!r} must be a plain directory name (letters, digits, '_', '-', '.')")
    return value


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type accepts true/false anywhere (bool, bool | None, Literal[True] ...)."""
    if annotation is bool:
        return True
    return any(arg is bool or isinstance(arg, bool) or _admits_bool(arg) for arg in typing.get_args(annotation))


def _holds_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list | tuple) and any(_holds_bool(v) for v in value))


class StrictModel(BaseModel):
    """A config section that rejects unknown keys (typos), non-finite floats and true/false for numbers.

    pydantic would otherwise read `epochs: true` as 1 and `lr: .inf` as a valid positive rate.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        # A model-level check (a field validator on "*" would also hit discriminator fields, which pydantic forbids).
        if not isinstance(data, dict):
            return data
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "bool_for_number", "expected {expected}, got a boolean (true/false)",
                    {"expected": typing_name(field.annotation)},
                ),
                loc=(name,),
                input=value,
            )
            for name, value in data.items()
            if (field := cls.model_fields.get(name)) is not None and _holds_bool(value) and not _admits_bool(field.annotation)
        ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


def check_finite(values: dict[str, Any], section: str) -> None:
    """A ValueError naming the first inf/nan among free-form keyword values (model/loss extras)."""
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{section}.{key} = {value}: must be a finite number")


def typing_name(annotation: Any) -> str:
    """A short readable name of a field type for error messages (int, float, list[int] ...)."""
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


#: Options of some datasets that earlier versions made fields of `data:` and wrote, for every dataset, into each
#: run's config.yaml and each sweep's sweep.yaml; one a dataset does not take is refused, naming `proselflc migrate`.
EARLIER_DATA_FIELDS = ("test_fraction", "task", "max_length", "tokenizer", "image_size", "rotation_degrees")


class DataConfig(StrictModel):
    """Which dataset, where it lives and how the noisy validation split is held out.

    Keys other than these fields are the dataset's own options (the keyword arguments its loader registered,
    e.g. `max_length` of `deeploc`, `rotation_degrees` of `cifar100`), checked by the `DATASETS` registry.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)

    name: str = "digits"
    root: Path | None = None
    download: bool = False
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    limit: int | None = Field(None, ge=1, description="use only the first N training examples (smoke runs)")
    augment: bool = True

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        return DATASETS.entry(value).name

    @model_validator(mode="after")
    def _root_needed(self, info: ValidationInfo) -> DataConfig:
        if DATASETS.entry(self.name).info.get("needs_root", True) and self.root is None:
            raise ValueError(f"dataset {self.name!r} needs data.root (the directory holding its files)")
        params = DATASETS.entry(self.name).params
        for key in self.options:
            if key in EARLIER_DATA_FIELDS and key not in params:
                source = (info.context or {}).get("source")
                file = source if source and Path(source).is_file() else "PATH"
                raise ValueError(
                    f"data.{key}: dataset {self.name!r} has no option {key!r} (its options: {', '.join(params) or '(none)'}). "
                    f"If an earlier proselflc wrote it (it wrote {', '.join(EARLIER_DATA_FIELDS)} for every dataset "
                    f"into each run's config.yaml and sweep's sweep.yaml), run `proselflc migrate {file}` to drop the "
                    f"ones dataset {self.name!r} does not take; otherwise remove it"
                )
            if key not in params:
                fields = [*type(self).model_fields, *params]
                raise ValueError(
                    f"data.{key}: unknown key (not a field of data, nor an option of dataset {self.name!r}, whose "
                    f"options are: {', '.join(params) or '(none)'}); {closest(key, fields)}"
                )
        check_finite(self.options, "data")
        DATASETS.check(self.name, self.options)
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The dataset's own options (the keys that are not fields of this section)."""
        return dict(self.model_extra or {})

    def options_in_force(self) -> dict[str, Any]:
        """The dataset's options with its defaults filled in: what a resume compares (a default is part of a run)."""
        return {**DATASETS.defaults(self.name), **self.options}


class NoiseConfig(StrictModel):
    """Synthetic label noise injected into the training labels before the validation split."""

    kind: str = "symmetric"
    rate: float = 0.0
    matrix: list[list[float]] | None = None
    allow_true_label: bool = Field(
        False, description="symmetric only: DivideMix variant where a flipped label may land on the true class"
    )
    seed: int | None = Field(None, description="noise seed; default: train.seed")
    label_set: str | None = Field(None, description="human only: the CIFAR-N annotation (aggre, random1, ..., noisy100)")
    file: Path | None = Field(None, description="human only: CIFAR-N's label file (CIFAR-10_human.pt, CIFAR-100_human.pt)")

    _known_kind = field_validator("kind")(check_noise_kind)

    @field_validator("file")
    @classmethod
    def _absolute_file(cls, value: Path | None) -> Path | None:
        # Absolute from where the config is read: a Ray trial runs in its own directory.
        return None if value is None else value.expanduser().resolve()

    @field_validator("rate")
    @classmethod
    def _rate_range(cls, value: float) -> float:
        if not is_noise_rate(value):
            raise ValueError(f"noise rate {value!r} is outside [0, 1)")
        return value

    @model_validator(mode="after")
    def _options_of_the_kind(self) -> NoiseConfig:
        # The kind's generator decides which of matrix / allow_true_label it reads and which it needs.
        options = {"matrix": self.matrix} if self.matrix is not None else {}
        if self.allow_true_label:
            options["allow_true_label"] = True
        options.update({k: v for k, v in (("label_set", self.label_set), ("file", self.file)) if v is not None})
        NOISE_KINDS.check(self.kind, options)
        if not NOISE_KINDS.entry(self.kind).info.get("uses_rate", True) and self.rate != 0:
            raise ValueError(f"noise kind {self.kind!r} does not use noise.rate; noise.rate must be 0 (got {self.rate})")
        return self


class ModelConfig(BaseModel):
    """A network from the `models` registry; extra keys are passed to its builder."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "mlp"

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _known_model(self) -> ModelConfig:
        from proselflc import models

        check_finite(self.kwargs, "model")
        models.check(self.name, **self.kwargs)
        return self


class LossConfig(BaseModel):
    """A loss from the `losses` registry; extra keys are its hyperparameters, checked by the registry."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "crossentropy"

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _valid_loss(self) -> LossConfig:
        from proselflc import losses

        check_finite(self.hyperparameters, "loss")
        losses.check(self.name, **self.hyperparameters)
        return self


class OptimConfig(StrictModel):
    """SGD with momentum (the ProSelfLC papers' recipe) or AdamW (transformers), warmup, then a schedule."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum; AdamW's beta1")
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["multistep", "cosine", "constant"] = "multistep"
    warmup_epochs: int = Field(0, ge=0)
    milestones: list[int] = Field(default_factory=list)
    milestones_unit: Literal["epochs", "iterations"] = Field(
        "epochs", description="iterations: training batches counted from 1, as the ProSelfLC code counts them"
    )
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    accumulate_steps: int = Field(1, ge=1, description="gradient accumulation: optimiser step every N batches")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(value)) or any(m < 1 for m in value):
            raise ValueError(f"milestones {shown(value)} must be strictly increasing numbers >= 1")
        return value


class TrainConfig(StrictModel):
    """Loop settings: length, batch, device, precision, seed and how often to evaluate and checkpoint."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    sampler: Literal["uniform", "class_balanced"] = Field(
        "uniform", description="class_balanced: classes_per_batch classes x batch_size/classes_per_batch examples, by noisy label"
    )
    classes_per_batch: int | None = Field(None, ge=1, description="class_balanced sampler only")
    eval_batch_size: int = Field(1024, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="bf16 autocast on CUDA; ignored on CPU")
    channels_last: bool = Field(True, description="channels_last memory format for CNNs (faster on CPU and CUDA)")
    compile: bool = False
    seed: int = 0
    eval_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="epochs between checkpoints in the run dir; 0: only the last")
    progress: bool = True
    threads: int | None = Field(
        None, ge=1, le=MAX_THREADS, description=f"torch intra-op threads on CPU (default: torch's); at most {MAX_THREADS}"
    )

    @model_validator(mode="after")
    def _balanced_batches(self) -> TrainConfig:
        if self.sampler == "uniform":
            if self.classes_per_batch is not None:
                raise ValueError("train.classes_per_batch is only used with train.sampler 'class_balanced'")
            return self
        if self.classes_per_batch is None or self.batch_size % self.classes_per_batch:
            raise ValueError(
                f"train.sampler 'class_balanced' needs train.classes_per_batch dividing train.batch_size = "
                f"{self.batch_size} (got classes_per_batch {self.classes_per_batch}), e.g. 64 for 64 classes x 2"
            )
        return self


class RunConfig(StrictModel):
    """One training run: everything the Engine needs, and nothing else."""

    name: str = "run"
    plugins: list[str] = Field(
        default_factory=list, description="modules or .py files to import first: losses, models, datasets they register"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, data: Any, info: ValidationInfo) -> Any:
        """Import the plugins before the sections are checked: they may name what the plugins register."""
        if isinstance(data, dict) and data.get("plugins"):
            from proselflc import plugins

            data = {**data, "plugins": plugins.resolve(data["plugins"], (info.context or {}).get("root", "."))}
            plugins.load(data["plugins"])
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_safe_name(value, "run name")

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        if DATASETS.entry(self.data.name).info.get("real_noise") and self.noise.rate > 0:
            raise ValueError(
                f"dataset {self.data.name!r} has real-world noisy labels; noise.rate must be 0 (got {self.noise.rate})"
            )
        needs = NOISE_KINDS.entry(self.noise.kind).info.get("dataset")
        allowed = (needs,) if isinstance(needs, str) else needs
        if allowed is not None and self.data.name not in allowed:
            wanted = " or ".join(repr(name) for name in allowed)
            raise ValueError(f"noise kind {self.noise.kind!r} needs data.name {wanted} (got {self.data.name!r})")
        if self.noise.file is not None and self.data.limit is not None:
            raise ValueError(
                f"data.limit = {self.data.limit} with noise.file: the label file labels the whole training set "
                "and is checked against it; remove data.limit"
            )
        epoch_milestones = self.optim.milestones_unit == "epochs"
        if epoch_milestones and self.optim.milestones and self.optim.milestones[-1] > self.train.epochs:
            raise ValueError(
                f"optim.milestones {self.optim.milestones} go past train.epochs = {self.train.epochs}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict (paths as strings) that `RunConfig.model_validate` reads back."""
        return self.model_dump(mode="json")


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    """One paragraph per problem: field path, offending value, what is allowed."""
    lines = [f"{source}: {err.error_count()} invalid field(s)"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        value = e.get("input")
        got = "" if isinstance(value, dict) else f" (got {shown(value)})"
        lines.append(f"  {loc}: {clip(msg, 1000)}{got}")
    return "\n".join(lines)


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """`--set a.b=value` pairs into a nested dict; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value (e.g. noise.rate=0.4)")
        key, raw = item.split("=", 1)
        try:
            value = safe_yaml.load_text(raw, source=f"override {item!r}") if raw.strip() else ""
        except safe_yaml.YamlRefused as exc:
            raise ConfigError(str(exc)) from None
        try:
            dotted.set_path(nested, key.strip(), value)
        except dotted.PathConflict as exc:
            raise ConfigError(f"override {item!r}: {exc.part!r} is already set to a value") from None
    return nested


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's top-level mapping, through the one hardened loader (`proselflc.safe_yaml`).

    Refused with a ConfigError naming the file (and line): a missing, empty, oversized or non-UTF-8
    file, invalid YAML, aliases, duplicate keys, a document that is not a mapping.
    """
    try:
        return safe_yaml.read_mapping(path)
    except safe_yaml.YamlRefused as exc:
        raise ConfigError(str(exc)) from None


def build_run_config(raw: dict[str, Any], source: str = "config", root: str | Path = ".") -> RunConfig:
    """Validate a raw dict (plugin files relative to `root`) into a RunConfig; a ConfigError paragraph on problems."""
    try:
        return RunConfig.model_validate(raw, context={"root": str(root), "source": source})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run YAML (a file, or the name of a config shipped with proselflc), apply `--set` overrides, validate."""
    from proselflc import examples

    path = examples.resolve(path)
    raw = deep_merge(read_yaml(path), parse_overrides(overrides))
    return build_run_config(raw, source=str(path), root=Path(path).parent)
