"""Sweep files: validation with field/value/allowed errors, base configs from files, overrides, and the
pure decisions of the tuning layer (best-config selection, the resource preflight). No Ray needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proselflc.cli import main
from proselflc.config import ConfigError
from proselflc.tuning import build_sweep_config, check_placeable, load_sweep, select_best
from proselflc.tuning.sweep import SweepRunner, final_seeds

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

MINIMAL = {
    "name": "s",
    "base": {"model": {"name": "mlp"}, "train": {"epochs": 4}},
    "noise": {"kind": "symmetric", "rates": [0.0, 0.4]},
    "methods": {"crossentropy": {}, "ls": {"loss": "labelsmoothing", "hyperparameters": {"epsilon": 0.2}}},
}


def sweep(**changes):
    return build_sweep_config({**MINIMAL, **changes})


SWEEP_FILES = [p for p in sorted(CONFIGS.glob("*.yaml")) if "methods" in (yaml.safe_load(p.read_text()) or {})]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_shipped_sweeps_validate(path: Path) -> None:
    cfg = load_sweep(path)
    assert cfg.methods and cfg.noise.rates


def test_quickstart_is_the_documented_demo() -> None:
    cfg = load_sweep(CONFIGS / "quickstart.yaml")
    assert cfg.base.data.name == "digits"
    assert cfg.noise.kind == "symmetric" and cfg.noise.rates == [0.2, 0.4, 0.6]
    assert [m.loss for m in cfg.methods] == ["crossentropy", "labelsmoothing", "proselflc"]
    assert cfg.resources.gpu == 0 and cfg.study_concurrency == 1  # each study one trial at a time: reproducible
    # The regime where cross entropy memorises: a wide MLP, no weight decay, long at a high learning rate,
    # and ProSelfLC's transit time low enough for self-trust to start before memorisation does.
    assert cfg.base.model.model_dump().get("hidden") == 512 and cfg.base.optim.weight_decay == 0
    assert cfg.max_t == 40 and (cfg.scheduler_spec.grace, cfg.scheduler_spec.onset_factor) == ("onset", 3.0)  # noisy default
    assert cfg.methods[2].search["loss.transit_time_ratio"]["low"] <= 0.1


def test_defaults_studies_and_resolved_round_trip(tmp_path: Path) -> None:
    cfg = sweep(storage_path=str(tmp_path / "out"))
    assert cfg.max_t == 4 and cfg.metric == "val_accuracy" and cfg.mode == "max"
    assert cfg.sweep_dir == tmp_path / "out" / "s"
    from proselflc.tuning.config import validate_studies

    spaces = validate_studies(cfg)
    runner = SweepRunner(cfg)
    plans = runner.plans()
    keys = ["symmetric-0/crossentropy", "symmetric-0/ls", "symmetric-0.4/crossentropy", "symmetric-0.4/ls"]
    assert [p.key for p in plans] == list(runner.bases) == keys
    ls = runner.bases["symmetric-0.4/ls"]
    assert ls["loss"] == {"name": "labelsmoothing", "epsilon": 0.2}
    assert ls["noise"]["rate"] == 0.4 and ls["train"]["epochs"] == 4
    # the labelsmoothing preset, as Optuna distributions
    assert set(plans[3].distributions) == {"loss.epsilon", "optim.lr", "optim.weight_decay"}
    assert cfg.n_startup_trials == 2 and cfg.study_concurrency == 2  # num_samples 6 // 3
    resolved = cfg.resolved(spaces)
    again = build_sweep_config(yaml.safe_load(yaml.safe_dump(resolved)))
    assert again.resolved(validate_studies(again)) == resolved
    assert final_seeds(cfg) == [1, 2, 3]


def test_a_loaded_sweep_is_validated_once_and_the_runner_takes_it_as_it_is() -> None:
    cfg = sweep(searcher={"name": "grid"}, num_samples=12, methods={"ls": {
        "loss": "labelsmoothing", "search": {"loss.epsilon": {"type": "choice", "values": [0.1, 0.2, 0.3]},
                                              "optim.lr": {"type": "choice", "values": [0.01, 0.1, 0.2, 0.5]}}}})
    spaces = cfg.spaces
    assert cfg.spaces is spaces and SweepRunner(cfg).spaces is spaces, "the loader's validation, not a second one"
    assert set(spaces["ls"]) == {"loss.epsilon", "optim.lr"}
    # A changed sweep is not the validated one: it is validated again, with the loader's message.
    changed = cfg.model_copy(update={"num_samples": 5})
    with pytest.raises(ConfigError, match=r"num_samples = 5, but searcher grid runs every combination"):
        _ = changed.spaces
    cfg.num_samples = 4
    with pytest.raises(ConfigError, match=r"num_samples = 4, but searcher grid"):
        SweepRunner(cfg)


def test_base_from_a_run_file_with_overrides_and_set(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"model": {"name": "mlp", "hidden": 32},
                                                       "train": {"epochs": 10, "seed": 5}}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        **{k: v for k, v in MINIMAL.items() if k != "base"},
        "base": "run.yaml",
        "overrides": {"train.epochs": 6, "optim": {"lr": 0.05}},
        "storage_path": "rel",
    }))
    cfg = load_sweep(tmp_path / "sweep.yaml", ["base.train.batch_size=32", "num_samples=2", "asha.max_t=5"])
    assert cfg.base.model.kwargs == {"hidden": 32}
    assert cfg.base.train.epochs == 6 and cfg.base.train.seed == 5 and cfg.base.train.batch_size == 32
    assert cfg.base.optim.lr == 0.05 and cfg.num_samples == 2
    assert cfg.max_t == 5  # asha.max_t sets the trial length
    assert cfg.storage_path == Path.cwd() / "rel"  # relative to the working directory, like Ray's


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"noise": {"kind": "symetric", "rates": [0.2]}}, "did you mean 'symmetric'"),
        ({"noise": {"kind": "symmetric", "rates": [0.2, 1.0]}}, "outside [0, 1)"),
        ({"noise": {"kind": "symmetric", "rates": []}}, "noise.rates"),
        ({"methods": [{"name": "a", "loss": "mae"}, {"name": "a", "loss": "mse"}]}, "appear more than once"),
        ({"methods": {"bad name": {}}}, "plain directory name"),
        ({"methods": {"x": {"loss": "prosel"}}}, "did you mean 'proselflc'"),
        ({"methods": {"ls": {"loss": "labelsmoothing", "hyperparameters": {"epsilon": 2}}}},
         "methods.ls at noise rate 0"),
        ({"metric": "val_acc"}, "did you mean 'val_accuracy'"),
        ({"mode": "maximum"}, "mode"),
        ({"scheduler": {"name": "asha", "grace_period": 9}}, "scheduler.grace_period = 9 exceeds the trial length 4"),
        ({"scheduler": {"name": "asha", "reduction_factor": 1}}, "scheduler.asha.reduction_factor"),
        ({"asha": {"grace_period": 2}}, "asha: {grace_period: 2} is the earlier form of ASHA's settings; run `proselflc"),
        ({"resources": {"gpu": 1.5}}, "fractions are allowed only up to 1"),
        ({"resources": {"cpu": 0}}, "resources.cpu"),
        ({"num_samples": 0}, "num_samples"),
        ({"final_seeds": -1}, "final_seeds"),
        ({"metric": "test_accuracy"}, "computed with the clean labels"),
        ({"metric": "noisy_corrected"}, "computed with the clean labels"),
        ({"metric": "noisy_fit"}, "computed with the clean labels"),
        ({"mode": "min"}, "mode 'min' for metric 'val_accuracy', whose better direction is 'max'"),
        ({"metric": "train_loss", "mode": "max"}, "omit mode (it follows the metric) or set mode: min"),
        ({"max_concurrent_studies": 0}, "max_concurrent_studies"),
        ({"per_study_concurrency": 0}, "per_study_concurrency"),
        ({"searcher": {"sampler": "bogus"}}, "searcher: {sampler: bogus} is the earlier form of the searcher section"),
        ({"budget": 3}, "budget: unknown key"),
        ({"base": "missing.yaml"}, "does not exist"),
        ({"base": {"train": {"epochs": 0}}}, "base.train.epochs"),
        ({"overrides": 3}, "overrides must be a mapping"),
        ({"base": None}, "base"),
        ({"methods": {"crossentropy": {"search": {"optim.lr": {"type": "uniform", "low": 0, "high": 0.5}}}}},
         "methods.crossentropy.search.optim.lr"),
    ],
)
def test_bad_sweeps_name_the_field_and_what_is_allowed(changes: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        sweep(**changes)
    assert expected in str(info.value)


def test_the_mode_follows_the_metric_unless_given() -> None:
    assert sweep().mode == "max" and sweep(metric="train_loss").mode == "min"
    assert sweep(metric="train_loss", mode="min").mode == "min"


def test_tune_cli_reports_a_bad_sweep_in_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "num_samples": "many"}))
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err
    assert "num_samples" in err and "'many'" in err and "Traceback" not in err
    assert main(["tune", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_select_best_prefers_full_length_finite_non_diverged_trials() -> None:
    results = [
        ({"optim.lr": 1}, {"epoch": 2, "val_accuracy": 0.99, "diverged": False}),  # stopped early by ASHA
        ({"optim.lr": 2}, {"epoch": 4, "val_accuracy": 0.70, "diverged": False}),
        ({"optim.lr": 3}, {"epoch": 4, "val_accuracy": 0.80, "diverged": False}),
        ({"optim.lr": 4}, {"epoch": 1, "val_accuracy": 0.0, "diverged": True}),
        ({"optim.lr": 5}, {"epoch": 4, "val_accuracy": float("nan"), "diverged": False}),
        ({"optim.lr": 6}, {}),
    ]
    assert select_best(results, "val_accuracy", "max", 4)[0] == {"optim.lr": 3}
    assert select_best(results, "val_accuracy", "min", 4)[0] == {"optim.lr": 2}
    assert select_best(results[:1] + results[3:], "val_accuracy", "max", 4)[0] == {"optim.lr": 1}
    assert select_best(results[3:], "val_accuracy", "max", 4) is None


def test_preflight_fails_when_no_node_can_place_a_trial() -> None:
    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    check_placeable(4, 1, nodes)
    check_placeable(0.5, 0.25, nodes)
    with pytest.raises(ConfigError) as info:
        check_placeable(1, 2, nodes)
    assert "resources.gpu = 2" in str(info.value) and "lower it to at most 1" in str(info.value)
    with pytest.raises(ConfigError, match="set resources.gpu: 0 to train on CPU"):
        check_placeable(1, 0.5, [{"CPU": 2.0}])
    with pytest.raises(ConfigError, match=r"resources.cpu = 16 \(lower it to at most 8\)"):
        check_placeable(16, 0, nodes)
    with pytest.raises(ConfigError, match="together"):
        check_placeable(4, 1, [{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}])
    with pytest.raises(ConfigError, match="no alive nodes"):
        check_placeable(1, 0, [])


@pytest.mark.parametrize(("argv", "expected"), [([], False), (["--verbose"], True)])
def test_tune_cli_shows_trial_workers_output_only_when_verbose(
    argv: list[str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local Ray started by `proselflc tune` forwards worker stdout/stderr only under --verbose."""
    import ray

    from proselflc.tuning import sweep as sweep_module

    calls: list[dict] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    stop = RuntimeError("stopped before Ray work")
    monkeypatch.setattr(sweep_module, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(stop))
    with pytest.raises(RuntimeError, match="stopped before Ray work"):
        main(["--debug", "tune", str(CONFIGS / "quickstart.yaml"), *argv])
    assert calls == [{"_node_ip_address": "127.0.0.1", "dashboard_host": "127.0.0.1", "include_dashboard": False,
                      "log_to_driver": expected}]


def test_loggers_are_validated_with_the_sweep() -> None:
    cfg = sweep(loggers=["mlflow", {"name": "mlflow", "tracking_uri": "sqlite:///x.db"}])
    assert [spec.tracking_uri for spec in cfg.loggers] == [None, "sqlite:///x.db"]
    with pytest.raises(ConfigError, match="loggers.0"):
        sweep(loggers=["mlfow"])


def test_a_sweep_without_base_is_refused() -> None:
    raw = {k: v for k, v in MINIMAL.items() if k != "base"}
    with pytest.raises(ConfigError, match="base: missing; give a run YAML path"):
        build_sweep_config(raw)
