"""Every trial's TensorBoard event files carry its hyperparameters and final metrics in the HParams format.

They are written when a trial ends, by proselflc's HParamsLoggerCallback where the runner passes
`tuning.loggers.build_callbacks`, else by Ray Tune's default TBXLoggerCallback (on whenever
tensorboardX is installed, which ray[tune] requires). These tests read them back with TensorBoard's own
event reader, and through a real `tensorboard --logdir <sweep>`, from the trial directories
`load_sweep` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.util import tensor_util

from proselflc.analysis import hyperparameter_columns, load_sweep
from test_loggers import tensorboard_hparams

pytestmark = pytest.mark.ray


def _hparams(trial_dir: Path) -> dict[str, Any]:
    """{'experiment', 'start', 'end'} HParams records and {'scalars': {tag: last value}} of one trial dir."""
    out: dict[str, Any] = {"scalars": {}}
    files = sorted(trial_dir.glob("events.out.tfevents.*"))
    assert files, f"{trial_dir} has no TensorBoard event file"
    for path in files:
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    kind = data.WhichOneof("data")
                    out[{"session_start_info": "start", "session_end_info": "end"}.get(kind, kind)] = getattr(
                        data, kind
                    )
                elif value.HasField("simple_value"):
                    out["scalars"][value.tag] = value.simple_value
                elif plugin == "scalars":  # tensorboardX's new-style scalars are tensors
                    out["scalars"][value.tag] = float(tensor_util.make_ndarray(value.tensor))
    return out


def _value(hparam: Any) -> Any:
    kind = hparam.WhichOneof("kind")
    return getattr(hparam, kind)


@pytest.fixture(scope="module")
def trials(tiny_sweep: Path) -> pd.DataFrame:
    df = load_sweep(tiny_sweep)
    last = df.dropna(subset=["epoch"]).sort_values("epoch").groupby(["study", "phase", "trial_id"]).tail(1)
    assert set(last["phase"]) == {"search", "final"}
    return last.assign(path=[tiny_sweep / d for d in last["trial_dir"]])


def test_every_trial_records_its_hyperparameters(trials: pd.DataFrame) -> None:
    params = hyperparameter_columns(trials)
    for _, trial in trials.iterrows():
        record = _hparams(trial["path"])
        # Sessions only: TensorBoard builds the sweep's experiment (every hparam and metric) from all of them.
        assert {"start", "end"} <= set(record) and "experiment" not in record, trial["trial_dir"]
        logged = {name.rsplit("/", 1)[-1]: _value(v) for name, v in record["start"].hparams.items()}
        expected = {p: trial[p] for p in params if pd.notna(trial[p])}
        assert expected, f"{trial['trial_dir']}: load_sweep found no hyperparameters"
        for name, value in expected.items():
            assert logged.get(name) == pytest.approx(value), f"{trial['trial_dir']}: {name}"
        assert record["end"].status == api_pb2.STATUS_SUCCESS


def test_every_trial_logs_its_final_metrics(trials: pd.DataFrame) -> None:
    for _, trial in trials.iterrows():
        record = _hparams(trial["path"])
        for metric in ("val_accuracy", "test_accuracy", "train_loss"):
            tag = next((t for t in record["scalars"] if t.rsplit("/", 1)[-1] == metric), None)
            assert tag is not None, f"{trial['trial_dir']}: HParams metrics lack {metric}"
            # The HParams tab shows a metric's last scalar: it must be the trial's final value.
            assert record["scalars"][tag] == pytest.approx(trial[metric], rel=1e-6)


def test_tensorboard_hparams_tab_lists_every_trial(tiny_sweep: Path, trials: pd.DataFrame, tmp_path: Path) -> None:
    """A real `tensorboard --logdir <sweep>` serves one HParams session group per trial dir."""
    experiment, groups = tensorboard_hparams(tiny_sweep, tmp_path, expect_sessions=len(trials))
    assert sorted(g["name"] for g in groups) == sorted(trials["trial_dir"])
    by_name = {g["name"]: g for g in groups}
    for _, trial in trials.iterrows():
        shown = {m["name"]["tag"].rsplit("/", 1)[-1]: m["value"] for m in by_name[trial["trial_dir"]]["metricValues"]}
        assert shown["val_accuracy"] == pytest.approx(trial["val_accuracy"], rel=1e-6)
    declared = {h["name"].rsplit("/", 1)[-1] for h in experiment["hparamInfos"]}
    assert {"optim.lr", "loss.exp_base"} <= declared  # every study's hyperparameters, not one trial's
