"""The Python API: `proselflc.tune / load / train`, the CLI's twin for notebooks, thin over the library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import proselflc
from proselflc.errors import ConfigError


@pytest.mark.subprocess
def test_importing_proselflc_and_its_api_names_loads_neither_torch_nor_ray() -> None:
    code = (
        "import sys, proselflc; proselflc.Sweep, proselflc.tune, proselflc.load, proselflc.train;"
        "heavy = sorted(m for m in ('torch', 'ray', 'pandas') if m in sys.modules); print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.ray
def test_load_reads_a_sweep_as_report_does(tiny_sweep: Path, tmp_path: Path) -> None:
    from proselflc.analysis import build_report

    sweep = proselflc.load(tiny_sweep)
    expected = build_report(tiny_sweep)
    assert list(sweep.table().mean.columns) == ["crossentropy", "proselflc"]
    assert sweep.table().to_markdown() == expected.table.to_markdown()
    assert sweep.memorisation().equals(expected.memorisation)
    assert len(sweep.best_configs()) == 4 and set(sweep.trials()["phase"]) == {"search", "final"}
    report = sweep.report(tmp_path / "report", formats=("md",), figures=False)
    assert report.files == [tmp_path / "report" / "results.md"]
    assert "noise rate" in sweep._repr_markdown_()
    with pytest.raises(ConfigError, match="is not a sweep directory"):
        proselflc.load(tmp_path)


def test_train_takes_a_shipped_name_and_nested_overrides(tmp_path: Path) -> None:
    history = proselflc.train(
        "digits", out=tmp_path / "run", train={"epochs": 2, "progress": False}, optim={"milestones": [1]},
        data={"limit": 300}, loss={"name": "proselflc"},
    )
    assert [row["epoch"] for row in history] == [1, 2] and history.config.loss.name == "proselflc"
    assert list(history.frame()["epoch"]) == [1, 2] and (tmp_path / "run" / "metrics.csv").is_file()
    with pytest.raises(ConfigError, match="train.epochs"):
        proselflc.train({"train": {"epochs": 0}})


@pytest.mark.ray
def test_tune_runs_a_shipped_sweep_with_overrides(ray_session: Any, tmp_path: Path) -> None:
    sweep = proselflc.tune(
        "quickstart", methods=[{"name": "crossentropy"}], noise={"rates": [0.4]}, num_samples=1, final_seeds=0,
        scheduler={"name": "asha", "grace_period": 1}, storage_path=str(tmp_path), name="api",
        base={"train": {"epochs": 2}, "optim": {"milestones": [1]}, "data": {"limit": 300}},
    )
    assert sweep.path == tmp_path / "api"
    trials = sweep.trials()
    assert set(trials["study"]) == {"symmetric-0.4/crossentropy"} and trials["epoch"].max() == 2
