"""The Engine end to end on digits: metrics, files, determinism, exact resume, CLI and config errors."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from proselflc.cli import main
from proselflc.config import ConfigError, build_run_config, load_run_config
from proselflc.training import METRIC_KEYS, CheckpointError, Engine

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny(**overrides) -> dict:
    raw = {
        "name": "tiny",
        "noise": {"kind": "symmetric", "rate": 0.4},
        "model": {"name": "mlp", "hidden": 32},
        "loss": {"name": "crossentropy"},
        "optim": {"lr": 0.1, "warmup_epochs": 1, "milestones": [3]},
        "train": {"epochs": 4, "batch_size": 64, "seed": 3, "progress": False, "threads": 1},
    }
    for section, values in overrides.items():
        replace = section in ("model", "loss")
        raw[section] = values if replace else {**raw.get(section, {}), **values}
    return raw


def strip(history: list[dict]) -> list[dict]:
    """Metrics without the wall-clock throughput, which is the only thing allowed to differ."""
    return [{k: v for k, v in row.items() if k != "samples_per_s"} for row in history]


def run(raw: dict) -> list[dict]:
    return Engine(build_run_config(raw)).run()


@pytest.mark.parametrize("loss", [{"name": "crossentropy"}, {"name": "proselflc", "exp_base": 8,
                                                             "trust_mode": "entropy", "logit_temperature": 0.5}])
def test_digits_at_40_percent_noise_gives_sane_metrics(loss, tmp_path):
    history = Engine(build_run_config(tiny(loss=loss)), run_dir=tmp_path).run()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    last = history[-1]
    assert set(METRIC_KEYS) <= set(last)
    for key in ("val_accuracy", "test_accuracy", "noisy_fit", "noisy_corrected", "clean_fit", "test_max_p"):
        assert 0.0 <= last[key] <= 1.0, key
    assert 0.0 <= last["test_entropy"] <= 1.0
    assert last["test_accuracy"] > 0.5, "an MLP learns digits well above chance even at 40% noise"
    assert last["noisy_corrected"] > last["noisy_fit"], "early on, the noisy subset is mostly predicted as its truth"
    assert last["samples_per_s"] > 0 and not last["diverged"]
    if loss["name"] == "crossentropy":
        assert all(row["mean_epsilon"] == 0.0 for row in history)
    else:
        eps = [row["mean_epsilon"] for row in history]
        assert 0.0 < eps[0] < eps[-1] < 1.0, "ProSelfLC's trust grows with training time"

    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "checkpoint.pt").is_file()
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(last["test_accuracy"])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"val_accuracy", "test_accuracy", "noisy_fit", "mean_epsilon"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("test_accuracy")] == [1, 2, 3, 4]


def test_noise_is_applied_before_the_validation_split():
    engine = Engine(build_run_config(tiny()))
    n_total = len(engine.true_labels)
    assert len(engine.val_index) == round(0.1 * n_total)
    assert set(engine.val_index.tolist()).isdisjoint(engine.train_index.tolist())
    flipped = (engine.noisy_labels != engine.true_labels).float()
    assert flipped.mean().item() == pytest.approx(0.4, abs=1 / n_total)
    assert flipped[engine.val_index].sum() > 0, "validation labels are noisy, as in real life"


def test_same_seed_gives_bit_identical_metrics():
    a, b = run(tiny()), run(tiny())
    assert strip(a) == strip(b)
    c = run(tiny(train={"seed": 4}))
    assert strip(a) != strip(c)


@pytest.mark.parametrize(
    "model", [{"name": "mlp", "hidden": 32, "dropout": 0.2}, {"name": "cnn", "width": 8}], ids=["mlp", "cnn"]
)
def test_resume_from_a_checkpoint_ends_identical_to_an_uninterrupted_run(tmp_path, model):
    """The CNN case also covers channels_last weights and momentum buffers going through a checkpoint."""
    raw = tiny(model=model,
               loss={"name": "proselflc", "trust_mode": "max_p"}, optim={"accumulate_steps": 2})
    full = run(raw)
    first = Engine(build_run_config(raw))
    for row in first.epochs():
        if row["epoch"] == 2:
            break
    first.save_checkpoint(tmp_path / "ck.pt")
    second = Engine(build_run_config(raw))
    second.load_checkpoint(tmp_path / "ck.pt")
    assert second.epoch == 2
    resumed = list(second.epochs())
    assert strip(second.history) == strip(full)  # prediction_changes too: its last predictions are checkpointed
    assert all("prediction_changes" in row for row in full)
    assert [r["epoch"] for r in resumed] == [3, 4]
    for p, q in zip(second.model.state_dict().values(), Engine(build_run_config(raw)).model.state_dict().values()):
        assert p.shape == q.shape


def test_checkpoint_refuses_pickled_code_and_other_runs(tmp_path):
    engine = Engine(build_run_config(tiny()))
    bad = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": Path("x")}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        engine.load_checkpoint(bad)
    truncated = tmp_path / "truncated.pt"
    engine.save_checkpoint(tmp_path / "good.pt")
    truncated.write_bytes((tmp_path / "good.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="refused"):
        engine.load_checkpoint(truncated)
    other = Engine(build_run_config(tiny(loss={"name": "labelsmoothing"})))
    with pytest.raises(CheckpointError, match="loss.name"):
        other.load_checkpoint(tmp_path / "good.pt")


def test_divergence_is_detected_and_stops_the_run():
    history = run(tiny(optim={"lr": 1e6, "warmup_epochs": 0, "momentum": 0.99}))
    assert history[-1]["diverged"] is True
    assert history[-1]["val_accuracy"] == 0.0 and math.isnan(history[-1]["test_loss"])
    assert len(history) < 4


def test_adamw_trains_and_resumes_its_moments_exactly(tmp_path):
    raw = tiny(optim={"name": "adamw", "lr": 0.003, "weight_decay": 0.01})
    full = run(raw)
    assert full[-1]["test_accuracy"] > 0.5
    first = Engine(build_run_config(raw))
    next(first.epochs())
    first.save_checkpoint(tmp_path / "ck.pt")
    second = Engine(build_run_config(raw))
    second.load_checkpoint(tmp_path / "ck.pt")
    list(second.epochs())
    assert strip(second.history) == strip(full)
    assert isinstance(second.optimizer, torch.optim.AdamW)


def test_cnn_and_cosine_schedule_with_eval_every():
    history = run(tiny(model={"name": "cnn", "width": 8}, optim={"schedule": "cosine", "milestones": []},
                       train={"eval_every": 3}))
    assert [r["epoch"] for r in history] == [3, 4]
    assert history[-1]["lr"] < 0.1 * 0.1


def test_cnns_train_channels_last_on_cpu_too_same_function_and_deterministic():
    """channels_last changes the memory layout (4-23% faster CNN steps on CPU), not the function computed."""
    raw = tiny(model={"name": "cnn", "width": 8})
    nhwc = Engine(build_run_config(raw))
    nchw = Engine(build_run_config({**raw, "train": {**raw["train"], "channels_last": False}}))
    assert nhwc.device.type == "cpu"
    conv = lambda engine: next(m for m in engine.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1).weight
    assert conv(nhwc).is_contiguous(memory_format=torch.channels_last)
    assert not conv(nchw).is_contiguous(memory_format=torch.channels_last)
    index = torch.arange(64)
    with torch.no_grad():
        x = nhwc._inputs("test", index, augment=False)
        assert x.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(
            nhwc.model.eval()(x), nchw.model.eval()(nchw._inputs("test", index, augment=False)), rtol=1e-4, atol=1e-5
        )
    assert strip(run(raw)) == strip(run(raw))


def test_cli_train_with_overrides_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(CONFIGS / "digits.yaml"), "--out", str(out), "--set", "train.epochs=3",
            "--set", "optim.milestones=[1]", "--set", "loss.name=proselflc", "--set", "train.progress=false"]
    assert main([*args[:4], "--set", "train.epochs=2", *args[6:]]) == 0
    assert "test_accuracy" in capsys.readouterr().out
    with open(out / "metrics.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    # An interrupted 3-epoch run: its first 2 epochs, checkpointed, then `--resume` with the same config.
    overrides = [*args[5::2], "train.checkpoint_every=1"]  # the --set values of args
    interrupted = Engine(load_run_config(CONFIGS / "digits.yaml", overrides), run_dir=out)
    for row in interrupted.epochs():
        if row["epoch"] == 2:
            break
    interrupted.writer.close()
    assert main([*args, "--set", "train.checkpoint_every=1", "--resume"]) == 0
    with open(out / "metrics.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("noise.rate=1.5", "noise.rate: noise rate 1.5 is outside [0, 1)"),
        ("noise.kind=symetric", "did you mean 'symmetric'"),
        ("data.name=cifar1000", "unknown dataset 'cifar1000'"),
        ("model.name=resnet81", "did you mean 'resnet18'"),
        ("train.device=tpu", "train.device"),
        ("train.epochs=0", "train.epochs"),
        ("optim.milestones=[5,3]", "strictly increasing"),
        ("train.bogus=1", "train.bogus: unknown key"),
        ("data.name=cifar100", "needs data.root"),
        ("loss.name=crossentropi", "crossentropy"),
    ],
)
def test_config_errors_name_the_field_and_what_is_allowed(override, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_run_config(CONFIGS / "digits.yaml", [override])


def test_cli_prints_a_paragraph_not_a_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert main(["train", str(CONFIGS / "digits.yaml"), "--set", "noise.rate=-0.1"]) == 2
    assert "noise.rate" in capsys.readouterr().err
