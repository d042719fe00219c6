"""`proselflc migrate` rewrites each earlier form once; the loader refuses the earlier searcher form, naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from proselflc.cli import main
from proselflc.config import ConfigError
from proselflc.sweep_contract import MANIFEST_FILE, SWEEP_FILE
from proselflc.tuning import build_sweep_config, load_sweep
from proselflc.tuning.migrate import KEPT_SUFFIX

SWEEP = {
    "name": "old",
    "base": {"model": {"name": "mlp"}, "train": {"epochs": 4}},
    "noise": {"kind": "symmetric", "rates": [0.4]},
    "methods": {"crossentropy": {}},
}


def write(path: Path, raw: dict) -> Path:
    path.write_text("# my sweep\n" + yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_earlier_searcher_form_is_refused_then_migrated_once(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "sweep.yaml", {**SWEEP, "searcher": {"name": "optuna", "sampler": "cmaes", "seed": 4}})
    with pytest.raises(ConfigError) as refused:
        load_sweep(path)
    assert f"searcher: {{name: optuna, sampler: cmaes}} is the earlier form of the searcher section; run " \
           f"`proselflc migrate {path}`" in str(refused.value)
    assert main(["migrate", str(path)]) == 0
    assert "searcher: {name: optuna, sampler: cmaes} -> searcher: {name: cmaes}" in capsys.readouterr().out
    migrated = load_sweep(path)
    assert migrated.searcher.name == "cmaes" and migrated.searcher.seed == 4
    assert (tmp_path / f"sweep.yaml{KEPT_SUFFIX}").read_text().startswith("# my sweep"), "the original is kept"
    assert main(["migrate", str(path)]) == 0
    assert "already in the current form" in capsys.readouterr().out


def test_asha_settings_in_the_asha_section_are_refused_then_moved_to_the_scheduler(tmp_path: Path, capsys) -> None:
    old = {**SWEEP, "noise": {"kind": "symmetric", "rates": [0.0]},
           "asha": {"max_t": 3, "grace_period": 1, "reduction_factor": 2}}
    path = write(tmp_path / "sweep.yaml", old)
    with pytest.raises(ConfigError) as refused:
        load_sweep(path)
    assert "asha: {grace_period: 1, reduction_factor: 2} is the earlier form of ASHA's settings; run " \
           f"`proselflc migrate {path}`" in str(refused.value)
    assert main(["migrate", str(path)]) == 0
    assert "asha: {grace_period, reduction_factor} -> scheduler: {name: asha, grace_period, reduction_factor}" \
        in capsys.readouterr().out
    raw = yaml.safe_load(path.read_text())
    assert raw["asha"] == {"max_t": 3}
    assert raw["scheduler"] == {"name": "asha", "grace_period": 1, "reduction_factor": 2}
    after = load_sweep(path)
    assert (after.scheduler_spec.grace_period, after.scheduler_spec.reduction_factor, after.max_t) == (1, 2, 3)


def test_a_migrated_sweep_file_keeps_the_users_comments_order_and_layout(tmp_path: Path) -> None:
    """Only the earlier sections change: comments, flow mappings and long lines elsewhere stay as written, and the
    scheduler takes the place of the asha settings it replaces."""
    text = (
        "# Quickstart: what it is for\n"
        "name: old   # the sweep's name\n"
        "base:\n"
        "  model: {name: mlp}\n"
        "  optim: {lr: 0.2, momentum: 0.9, weight_decay: 0.0, schedule: multistep, milestones: [2, 3], gamma: 0.1}\n"
        "  train: {epochs: 4}\n"
        "noise: {kind: symmetric, rates: [0.4]}\n"
        "methods:\n"
        "  crossentropy: {}   # the baseline\n"
        "asha: {grace_period: 2, reduction_factor: 2}   # rungs at epochs 2 and 4\n"
        "searcher: {name: optuna, sampler: tpe, seed: 0}\n"
        "num_samples: 2            # trials per study\n"
    )
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    assert main(["migrate", str(path)]) == 0
    lines = path.read_text().splitlines()
    kept = [line for line in text.splitlines() if not line.startswith(("asha:", "searcher:"))]
    assert [line for line in lines if line in kept] == kept, path.read_text()
    assert lines[lines.index("methods:") + 2:lines.index("methods:") + 6] == [
        "scheduler:", "  name: asha", "  grace_period: 2", "  reduction_factor: 2"
    ], path.read_text()
    sweep = load_sweep(path)
    assert (sweep.scheduler_spec.name, sweep.scheduler_spec.grace_period, sweep.searcher.name) == ("asha", 2, "tpe")
    assert sweep.num_samples == 2 and sweep.base.optim.milestones == [2, 3]


def test_an_earlier_sweep_directory_resumes_with_its_file_once_both_are_migrated(tmp_path: Path, capsys) -> None:
    """An earlier version's sweep.yaml wrote every asha field (scheduler null, or a scheduler beside asha's
    defaults): migrated, it resolves to the same sweep as the user's migrated file, which `--resume` compares."""
    for scheduler, user_file in (
        (None, {"asha": {"max_t": 3}}),
        ({"name": "median", "grace_period": 1}, {"asha": {"max_t": 3}, "scheduler": {"name": "median"}}),
    ):
        sweep_dir = tmp_path / f"old-{scheduler is None}"
        sweep_dir.mkdir()
        clean = {**SWEEP, "noise": {"kind": "symmetric", "rates": [0.0]}}
        earlier = {**clean, "asha": {"max_t": 3, "grace_period": 1, "reduction_factor": 3.0, "brackets": 1},
                   "scheduler": scheduler}
        write(sweep_dir / SWEEP_FILE, earlier)
        assert main(["migrate", str(sweep_dir)]) == 0
        assert "asha: {grace_period, reduction_factor, brackets}" in capsys.readouterr().out
        stored = load_sweep(sweep_dir / SWEEP_FILE)
        mine = build_sweep_config({**clean, "name": stored.name, **user_file})
        assert stored.resolved(stored.spaces)["scheduler"] == mine.resolved(mine.spaces)["scheduler"]
        assert stored.resolved(stored.spaces)["asha"] == mine.resolved(mine.spaces)["asha"] == {"max_t": 3}


def test_a_sweep_directory_has_its_searcher_rewritten_and_a_version_1_manifest_explained(tmp_path: Path, capsys) -> None:
    sweep_dir = tmp_path / "old"
    sweep_dir.mkdir()
    write(sweep_dir / SWEEP_FILE, {**SWEEP, "searcher": {"name": "optuna", "sampler": "random"}})
    (sweep_dir / MANIFEST_FILE).write_text(json.dumps({"sweep": "old", "metric": "val_accuracy", "mode": "max",
                                                       "studies": []}))
    assert main(["migrate", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "-> searcher: {name: random}" in out and "manifest.json is version 1 (one Tuner per study)" in out
    assert yaml.safe_load((sweep_dir / SWEEP_FILE).read_text())["searcher"] == {"name": "random"}
    assert main(["migrate", str(tmp_path / "nowhere")]) == 2
    assert "is neither a sweep file nor a sweep directory" in capsys.readouterr().err


def test_a_version_1_sweep_s_nested_final_runs_are_refused_by_the_loader_then_migrated(tmp_path: Path, capsys) -> None:
    """An earlier version kept each study in its own experiment and nested a final re-run's params under
    `final_run`: `report` refuses that form naming migrate, and reads the sweep once migrate wrote them flat."""
    from proselflc import analysis

    sweep_dir = tmp_path / "old"
    study = "symmetric-0.4/crossentropy"
    search, final = sweep_dir / "symmetric-0.4_crossentropy" / "search" / "t1", sweep_dir / "final" / "f1"
    rows = [{"epoch": e, "training_iteration": e, "val_accuracy": 0.5 + e / 10, "test_accuracy": 0.6 + e / 10}
            for e in (1, 2)]
    for trial, params in ((search, {"optim.lr": 0.1}),
                          (final, {"final_run": {"study": study, "optim.lr": 0.1, "train.seed": 1}})):
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps(params))
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write(sweep_dir / SWEEP_FILE, SWEEP)
    entry = {"study": study, "dataset": "digits", "model": "mlp", "noise_kind": "symmetric", "noise_rate": 0.4,
             "method": "crossentropy", "search_dir": "symmetric-0.4_crossentropy/search", "final_dir": "final",
             "status": "finished", "best_params": {"optim.lr": 0.1}, "best_trial": "t1"}
    (sweep_dir / MANIFEST_FILE).write_text(json.dumps({"sweep": "old", "max_t": 2, "final_seeds": [1],
                                                       "studies": [entry]}))
    with pytest.raises(ConfigError, match=f"earlier form.*run `proselflc migrate {sweep_dir}`"):
        analysis.load_sweep(sweep_dir)
    assert main(["migrate", str(sweep_dir)]) == 0
    assert "1 final re-runs' params.json: {final_run: {...}} -> {phase: final, ...}" in capsys.readouterr().out
    assert json.loads((final / "params.json").read_text()) == {
        "phase": "final", "study": study, "optim.lr": 0.1, "train.seed": 1}
    loaded = analysis.load_sweep(sweep_dir)
    assert sorted(set(loaded["phase"])) == ["final", "search"]
    assert main(["migrate", str(sweep_dir)]) == 0
    assert "final re-runs' params.json" not in capsys.readouterr().out  # once
