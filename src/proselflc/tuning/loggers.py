"""Experiment trackers a sweep reports to, through Ray Tune's own logger callbacks.

A sweep file's optional `loggers:` list names them; each entry validates into a `LoggerSpec`
and `build_callbacks` turns the list into the `ray.tune.Callback`s a Tuner's RunConfig takes:

    loggers:
      - mlflow                                        # MLflow's default tracking store
      - {name: mlflow, tracking_uri: sqlite:///mlflow.db, experiment_name: cifar100}

MLflow comes with the optional `tracking` extra (`pip install 'proselflc[tracking]'`); a local
SQLite store (MLflow's default, sqlite:///mlflow.db in the working directory) needs no server, so it
works offline. MLflow 3 refuses new file stores (./mlruns) unless MLFLOW_ALLOW_FILE_STORE=true.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from proselflc.config import ConfigError, format_validation_error


class LoggerSpec(BaseModel):
    """One `loggers:` entry: MLflow through Ray Tune's MLflowLoggerCallback (one MLflow run per trial)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["mlflow"]
    tracking_uri: str | None = Field(
        default=None, description="e.g. sqlite:///mlflow.db, http://host:5000; default: MLflow's own"
    )
    experiment_name: str | None = Field(default=None, description="default: the sweep's name")
    tags: dict[str, str] = Field(default_factory=dict, description="set on every trial's run")
    save_artifact: bool = Field(default=False, description="also upload each trial's directory as artifacts")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        """`- mlflow` is shorthand for `- {name: mlflow}`."""
        return {"name": value} if isinstance(value, str) else value

    @field_validator("tracking_uri", "experiment_name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave it out for the default")
        return value


_SPECS = TypeAdapter(list[LoggerSpec])


def parse_loggers(raw: Any, source: str = "loggers") -> list[LoggerSpec]:
    """Validate a raw `loggers:` value (None means none) into specs, with ConfigError naming the entry."""
    if raw is None:
        return []
    try:
        return _SPECS.validate_python(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def build_callbacks(specs: list[LoggerSpec], sweep: str | None = None) -> list[Any]:
    """The Ray Tune callbacks for `specs`; an experiment without a name is named after `sweep`.

    Raises ConfigError when a tracker's package is missing, naming the extra that installs it.
    """
    callbacks: list[Any] = []
    for spec in specs:
        try:
            import mlflow  # noqa: F401 (Ray's callback imports it only at setup: fail here, before the sweep)
            from ray.air.integrations.mlflow import MLflowLoggerCallback
        except ImportError:
            raise ConfigError(
                f"loggers: {spec.name!r} needs MLflow; install it with `pip install 'proselflc[tracking]'`"
            ) from None
        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=spec.tracking_uri,
                experiment_name=spec.experiment_name or sweep,
                tags={**({"sweep": sweep} if sweep else {}), **spec.tags},
                save_artifact=spec.save_artifact,
            )
        )
    return callbacks


__all__ = ["LoggerSpec", "build_callbacks", "parse_loggers"]
