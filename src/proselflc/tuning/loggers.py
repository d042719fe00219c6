"""Where a sweep's trials are logged besides the sweep directory: TensorBoard HParams and trackers.

A sweep file's optional `loggers:` list names the trackers; each entry validates into a
`LoggerSpec`, and `build_callbacks` turns the list into the `ray.tune.Callback`s a Tuner's RunConfig
takes, always led by `HParamsLoggerCallback` (TensorBoard HParams that compare a whole sweep):

    loggers:
      - mlflow                                        # MLflow's default tracking store
      - {name: mlflow, tracking_uri: sqlite:///mlflow.db, experiment_name: cifar100}

MLflow comes with the optional `tracking` extra (`pip install 'proselflc[tracking]'`); a local
SQLite store (MLflow's default, sqlite:///mlflow.db in the working directory) needs no server, so it
works offline. MLflow 3 refuses new file stores (./mlruns) unless MLFLOW_ALLOW_FILE_STORE=true.
"""

from __future__ import annotations

import json
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
from ray.tune.logger import TBXLoggerCallback
from ray.tune.utils import flatten_dict

from proselflc.config import format_validation_error
from proselflc.errors import ConfigError


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


class HParamsLoggerCallback(TBXLoggerCallback):
    """Ray Tune's TensorBoard logger, with HParams that one `tensorboard --logdir <sweep>` compares across studies.

    Ray's own TBXLoggerCallback also writes an HParams *experiment* summary into every trial, and
    TensorBoard shows only the first one it finds: a sweep's HParams tab then had the columns of one
    arbitrary trial (a crossentropy trial hid proselflc's `loss.exp_base`, a noise-free study hid
    `noisy_fit`). This one writes each trial's session (its whole config, flattened, and whether it
    failed) and no experiment summary, so TensorBoard builds the columns from every trial of the sweep.
    """

    def _try_log_hparams(self, trial: Any, result: dict[str, Any]) -> None:
        """Ray's per-trial experiment summary is left out; `log_trial_end` writes the session instead."""

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if trial in self._trial_writer and self._trial_result.get(trial):
            writer = self._trial_writer[trial].file_writer
            for summary in session_summaries(trial.config, failed):
                writer.add_summary(summary)
        super().log_trial_end(trial, failed)


def session_summaries(config: dict[str, Any], failed: bool = False) -> list[Any]:
    """HParams session start (`config` flattened with '/', scalars only) and end (success or failure)."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    start = SessionStartInfo()
    for name, value in flatten_dict(config).items():
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = float(value)
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        elif value is not None:
            start.hparams[name].string_value = json.dumps(value, default=str)
    end = SessionEndInfo(status=Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS"))
    out = []
    for tag, data in (
        ("_hparams_/session_start_info", HParamsPluginData(session_start_info=start, version=0)),
        ("_hparams_/session_end_info", HParamsPluginData(session_end_info=end, version=0)),
    ):
        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=data.SerializeToString())
        )
        out.append(Summary(value=[Summary.Value(tag=tag, metadata=metadata)]))
    return out


def build_callbacks(specs: list[LoggerSpec], sweep: str | None = None) -> list[Any]:
    """The Ray Tune callbacks of a sweep's Tuners: TensorBoard HParams, then one per `specs` entry.

    An MLflow experiment without a name is named after `sweep`. Raises ConfigError when a tracker's
    package is missing, naming the extra that installs it.
    """
    callbacks: list[Any] = [HParamsLoggerCallback()]
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


__all__ = ["HParamsLoggerCallback", "LoggerSpec", "build_callbacks", "parse_loggers", "session_summaries"]
