"""`loggers:` specs -> Ray Tune's MLflowLoggerCallback, run by a real Tuner and read back from MLflow's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proselflc.config import ConfigError
from proselflc.tuning.loggers import LoggerSpec, build_callbacks, parse_loggers


def test_specs_accept_the_bare_name_and_reject_bad_entries_by_field() -> None:
    specs = parse_loggers(["mlflow", {"name": "mlflow", "tracking_uri": "sqlite:///m.db", "tags": {"a": "b"}}])
    assert specs == [
        LoggerSpec(name="mlflow"),
        LoggerSpec(name="mlflow", tracking_uri="sqlite:///m.db", tags={"a": "b"}),
    ]
    assert parse_loggers(None) == []
    with pytest.raises(ConfigError, match=r"0\.name: Input should be 'mlflow' \(got 'mlfow'\)"):
        parse_loggers(["mlfow"])
    with pytest.raises(ConfigError, match=r"1\.trackinguri: unknown key"):
        parse_loggers(["mlflow", {"name": "mlflow", "trackinguri": "file:///x"}])
    with pytest.raises(ConfigError, match=r"0\.experiment_name: must not be empty"):
        parse_loggers([{"name": "mlflow", "experiment_name": " "}])


@pytest.mark.ray
def test_mlflow_callback_records_one_run_per_trial(ray_session: Any, tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow", reason="MLflow comes with the 'tracking' extra (make test installs it)")
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        """Three reports of a made-up metric (nested, so Ray pickles it by value for the workers)."""
        for step in range(1, 4):
            tune.report({"val_accuracy": config["lr"] * step, "epoch": step})

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow 3 refuses new file stores (./mlruns) by default
    callbacks = build_callbacks(parse_loggers([{"name": "mlflow", "tracking_uri": uri}]), sweep="tiny")
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2])},
        run_config=tune.RunConfig(name="loggers", storage_path=str(tmp_path / "ray"), callbacks=callbacks, verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    assert sorted(float(r.data.params["lr"]) for r in runs) == [0.1, 0.2]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["sweep"] == "tiny"
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        lr = float(run.data.params["lr"])
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([lr, 2 * lr, 3 * lr])
