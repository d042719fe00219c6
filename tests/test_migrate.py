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
    scheduler takes the place, the layout and the comment of the asha settings it replaces."""
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
    scheduler = lines[lines.index("methods:") + 2]  # one line as the user wrote asha's, with its comment
    assert scheduler.startswith("scheduler: {name: asha, grace_period: 2, reduction_factor: 2} "), path.read_text()
    assert scheduler.endswith(" # rungs at epochs 2 and 4"), path.read_text()
    sweep = load_sweep(path)
    assert (sweep.scheduler_spec.name, sweep.scheduler_spec.grace_period, sweep.searcher.name) == ("asha", 2, "tpe")
    assert sweep.num_samples == 2 and sweep.base.optim.milestones == [2, 3]


def test_asha_settings_beside_max_t_move_out_and_the_comment_stays_once_on_the_asha_line(tmp_path: Path) -> None:
    """`asha: {grace_period, max_t}  # ...`: the scheduler takes grace_period on a line of its own; max_t stays in
    `asha:` as the user wrote it, on one line, and the comment is not copied onto the scheduler's line."""
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "name: old\nbase: {model: {name: mlp}, train: {epochs: 9}}\nnoise: {kind: symmetric, rates: [0.4]}\n"
        "methods: {crossentropy: {}}\nasha: {grace_period: 2, max_t: 9}   # stop at 9\n"
    )
    assert main(["migrate", str(path)]) == 0
    lines = path.read_text().splitlines()
    assert "scheduler: {name: asha, grace_period: 2}" in lines, path.read_text()
    assert [line.split("#")[0].rstrip() for line in lines if "# stop at 9" in line] == ["asha: {max_t: 9}"], (
        path.read_text()
    )
    assert load_sweep(path).scheduler_spec.grace_period == 2


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


#: What an earlier version wrote into every run's config.yaml and sweep's sweep.yaml, whatever the dataset.
EARLIER_DATA = {"test_fraction": 0.25, "task": "loc", "max_length": 512, "tokenizer": None, "image_size": 224,
                "rotation_degrees": 0.0}


def test_an_option_the_dataset_does_not_take_is_refused_naming_migrate(tmp_path: Path) -> None:
    from proselflc.config import load_run_config

    path = write(tmp_path / "run.yaml", {"data": {"name": "digits", "max_length": 64}})
    with pytest.raises(ConfigError) as refused:
        load_run_config(path)
    message = str(refused.value)
    assert "data.max_length: dataset 'digits' has no option 'max_length' (its options: test_fraction)" in message
    assert f"run `proselflc migrate {path}` to drop the ones dataset 'digits' does not take" in message
    assert load_run_config(path, ["data.name=deeploc", f"data.root={tmp_path}"]).data.options == {"max_length": 64}
    from proselflc import data

    halves = load_run_config(write(tmp_path / "halves.yaml", {"data": {"name": "digits", "test_fraction": 0.5}}))
    assert len(data.load(halves.data).test_labels) == 899, "digits' own option reaches its loader"


def test_a_run_config_keeps_its_dataset_s_options_and_comments_when_migrated(tmp_path: Path, capsys) -> None:
    from proselflc.config import load_run_config

    path = tmp_path / "deeploc.yaml"
    data = {"name": "deeploc", "root": str(tmp_path), **EARLIER_DATA, "task": "membrane", "max_length": 64}
    write(path, {"data": data})
    assert main(["migrate", str(path)]) == 0
    assert "data: {image_size, rotation_degrees} dropped" in capsys.readouterr().out
    assert path.read_text().startswith("# my sweep"), "comments are kept"
    cfg = load_run_config(path)
    assert cfg.data.options == {"test_fraction": 0.25, "task": "membrane", "max_length": 64, "tokenizer": None}
    assert main(["migrate", str(path)]) == 0
    assert "already in the current form" in capsys.readouterr().out


def test_an_earlier_sweep_directory_resumes_once_its_data_section_is_migrated(tmp_path: Path, capsys) -> None:
    """The sweep directory's sweep.yaml held every dataset field: --resume refuses it naming migrate, then resumes
    (the comparison `tune --resume` makes, without Ray: the dataset's options in force are the same)."""
    from proselflc.tuning.sweep import SweepRunner

    mine = build_sweep_config({**SWEEP, "storage_path": str(tmp_path)})
    SweepRunner(mine).prepare(resume=False)
    sweep_file = tmp_path / "old" / SWEEP_FILE
    stored = yaml.safe_load(sweep_file.read_text())
    stored["base"]["data"].update(EARLIER_DATA)
    sweep_file.write_text(yaml.safe_dump(stored, sort_keys=False))
    with pytest.raises(ConfigError, match=f"run `proselflc migrate {sweep_file}` to drop the ones dataset 'digits'"):
        SweepRunner(mine).prepare(resume=True)
    assert main(["migrate", str(sweep_file.parent)]) == 0
    assert "base.data: {task, max_length, tokenizer, image_size, rotation_degrees} dropped" in capsys.readouterr().out
    assert yaml.safe_load(sweep_file.read_text())["base"]["data"]["test_fraction"] == 0.25, "digits takes it"
    assert SweepRunner(mine).prepare(resume=True).sweep == "old"
    changed = build_sweep_config({**SWEEP, "storage_path": str(tmp_path), "base": {
        **SWEEP["base"], "data": {"test_fraction": 0.5}}})
    with pytest.raises(ConfigError, match="the sweep differs from .* in base"):
        SweepRunner(changed).prepare(resume=True)


def test_an_earlier_run_directory_resumes_once_migrated(tmp_path: Path, capsys) -> None:
    """A run directory (made by training on digits) whose config.yaml an earlier version wrote with every dataset
    field: `train --resume` refuses it naming migrate; `proselflc migrate RUN_DIR` rewrites it; the resume then
    trains the remaining epoch."""
    import csv

    from proselflc.config import load_run_config
    from proselflc.training import Engine

    configs = Path(__file__).resolve().parents[1] / "configs"
    sets = ["train.epochs=2", "optim.milestones=[1]", "train.progress=false", "train.checkpoint_every=1", "data.limit=300"]
    run = tmp_path / "run"
    engine = Engine(load_run_config(configs / "digits.yaml", sets), run_dir=run)
    next(engine.epochs())  # interrupted after its checkpointed first epoch
    engine.writer.close()
    stored = yaml.safe_load((run / "config.yaml").read_text())
    stored["data"].update(EARLIER_DATA)
    (run / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    train = ["train", str(configs / "digits.yaml"), "--out", str(run), *(a for s in sets for a in ("--set", s)), "--resume"]
    assert main(train) == 2
    assert f"run `proselflc migrate {run / 'config.yaml'}`" in capsys.readouterr().err
    assert main(["migrate", str(run)]) == 0
    assert "data: {task, max_length, tokenizer, image_size, rotation_degrees} dropped" in capsys.readouterr().out
    assert main(train) == 0
    with open(run / "metrics.csv") as fh:
        assert [int(row["epoch"]) for row in csv.DictReader(fh)] == [1, 2]


@pytest.mark.ray
def test_tune_resume_of_a_migrated_sweep_directory_ends_with_its_table(tiny_sweep: Path, tmp_path: Path, capsys) -> None:
    """A copy of a finished sweep whose sweep.yaml holds every earlier dataset field: `tune --resume` refuses it
    naming migrate; once migrated, the resume runs and the report's table is the original's."""
    import shutil

    from proselflc.analysis import summary

    copy = tmp_path / "results" / tiny_sweep.name
    shutil.copytree(tiny_sweep, copy)
    stored = yaml.safe_load((copy / SWEEP_FILE).read_text())
    stored["base"]["data"].update(EARLIER_DATA)
    (copy / SWEEP_FILE).write_text(yaml.safe_dump(stored, sort_keys=False))
    assert main(["tune", str(copy / SWEEP_FILE), "--resume"]) == 2
    assert f"run `proselflc migrate {copy / SWEEP_FILE}`" in capsys.readouterr().err
    assert main(["migrate", str(copy)]) == 0
    assert main(["tune", str(copy / SWEEP_FILE), "--resume"]) == 0, capsys.readouterr()
    assert summary(copy) == summary(tiny_sweep)
