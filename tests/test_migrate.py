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


def test_asha_settings_in_the_asha_section_move_to_the_scheduler(tmp_path: Path, capsys) -> None:
    old = {**SWEEP, "asha": {"max_t": 3, "grace_period": 1, "reduction_factor": 2}}
    path = write(tmp_path / "sweep.yaml", old)
    assert main(["migrate", str(path)]) == 0
    raw = yaml.safe_load(path.read_text())
    assert raw["asha"] == {"max_t": 3}
    assert raw["scheduler"] == {"name": "asha", "grace_period": 1, "reduction_factor": 2}
    before, after = build_sweep_config(old), load_sweep(path)
    assert after.scheduler_spec == before.scheduler_spec and after.max_t == before.max_t == 3, "the same sweep"


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
