"""`loggers:` specs -> Ray Tune's MLflowLoggerCallback, run by a real Tuner and read back from MLflow's store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
@pytest.mark.slow
def test_mlflow_callback_records_one_run_per_trial(ray_session: Any, tmp_path: Path) -> None:
    try:
        import mlflow
    except ImportError:
        pytest.fail("MLflow is not installed: `pip install -e '.[tracking]'` (make test does)")
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


@pytest.mark.ray
@pytest.mark.slow
def test_hparams_callback_lets_tensorboard_compare_trials_with_different_hyperparameters(
    ray_session: Any, tmp_path: Path
) -> None:
    """Two 'studies' with different searched parameters, one trial failing: TensorBoard's own HParams
    backend, over the real server, must list every hyperparameter, every metric and the failure."""
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        """Reports, then fails where asked (nested, so Ray pickles it by value for the workers)."""
        for step in range(1, 3):
            metrics = {"val_accuracy": 0.1 * step, "epoch": step}
            if "loss.exp_base" in config:
                metrics["noisy_fit"] = 0.05 * step
            tune.report(metrics)
        if config.get("fail"):
            raise RuntimeError("this trial fails on purpose")

    spaces = {
        "a": {"study": "symmetric-0/crossentropy", "optim.lr": tune.grid_search([0.1, 0.2])},
        "b": {"study": "symmetric-0.4/proselflc", "loss.exp_base": tune.grid_search([4.0, 8.0]),
              "fail": tune.grid_search([False, True])},
    }
    for name, space in spaces.items():
        tune.Tuner(
            trainable,
            param_space=space,
            run_config=tune.RunConfig(
                name=name, storage_path=str(tmp_path / "sweep"), callbacks=build_callbacks([]), verbose=0
            ),
        ).fit()
    experiment, groups = tensorboard_hparams(tmp_path / "sweep", tmp_path, expect_sessions=6)
    assert {h["name"] for h in experiment["hparamInfos"]} >= {"study", "optim.lr", "loss.exp_base", "fail"}
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"ray/tune/val_accuracy", "ray/tune/noisy_fit"} <= metrics
    statuses = sorted(g["sessions"][0]["status"] for g in groups)
    assert statuses == ["STATUS_FAILURE"] * 2 + ["STATUS_SUCCESS"] * 4


def tensorboard_hparams(logdir: Path, home: Path, expect_sessions: int) -> tuple[dict, list[dict]]:
    """(experiment, session groups) from the HParams plugin of a real `tensorboard --logdir` on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(home)},
    )

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/data/plugin/hparams/{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    query = {"experimentName": "", "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_UNKNOWN",
             "STATUS_RUNNING"], "colParams": [], "startIndex": 0, "sliceSize": 1000}
    try:
        groups: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while len(groups) < expect_sessions and time.monotonic() < deadline:
            try:
                groups = post("session_groups", query)["sessionGroups"]
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, f"tensorboard exited: {server.stderr.read() if server.stderr else ''}"
            if len(groups) < expect_sessions:
                time.sleep(0.5)  # TensorBoard loads event files in the background
        assert len(groups) == expect_sessions
        return post("experiment", {"experimentName": ""}), groups
    finally:
        server.terminate()
        server.wait(timeout=10)
