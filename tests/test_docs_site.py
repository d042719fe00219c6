"""The docs site: the committed reference pages are what the code generates now, they name every field of every
config model, every metric and every built-in registry member's options, and `mkdocs build --strict` (broken
links and anchors are warnings) passes offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from proselflc import metric_table, reference
from proselflc.config import RunConfig
from proselflc.data.base import DATASETS
from proselflc.losses.base import LOSSES
from proselflc.models.base import MODELS
from proselflc.noise import NOISE_KINDS
from proselflc.tuning.config import SweepConfig

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "reference"


def _models(annotation: typing.Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _models(field.annotation)
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def _section(page: str, model: str) -> str:
    """The text of a page's `## Model` section."""
    start = page.index(f"\n## {model}\n")
    end = page.find("\n## ", start + 1)
    return page[start:] if end < 0 else page[start:end]


def test_the_committed_reference_is_what_the_code_generates() -> None:
    for name, text in reference.pages().items():
        committed = REFERENCE / name
        assert committed.exists(), f"docs/reference/{name} is missing: run `make docs` and commit it"
        assert committed.read_text(encoding="utf-8") == text, (
            f"docs/reference/{name} differs from what the code generates (a field or metric changed): "
            "run `make docs` and commit docs/reference/")


def test_the_reference_names_every_field_of_every_model_and_every_metric() -> None:
    run_page = (REFERENCE / "run-config.md").read_text(encoding="utf-8")
    sweep_page = (REFERENCE / "sweep-file.md").read_text(encoding="utf-8")
    run_models = set(_models(RunConfig))
    sweep_models = set(_models(SweepConfig)) - run_models
    assert {m.__name__ for m in run_models} >= {"RunConfig", "DataConfig", "NoiseConfig", "OptimConfig", "TrainConfig"}
    assert {m.__name__ for m in sweep_models} >= {"SweepConfig", "NoiseSweep", "MethodSpec", "TpeSearcher",
                                                   "AshaScheduler", "LoggerSpec"}
    for page, models in ((run_page, run_models), (sweep_page, sweep_models)):
        for model in models:
            section = _section(page, model.__name__)
            for field in model.model_fields:
                assert f"| `{field}` |" in section, f"{model.__name__}.{field} is not in its reference section"
    assert "[RunConfig](run-config.md#runconfig)" in _section(sweep_page, "SweepConfig")
    options_page = (REFERENCE / "options.md").read_text(encoding="utf-8")
    for registry in (DATASETS, NOISE_KINDS, MODELS, LOSSES):
        for name in registry.names:
            if not registry.entry(name).target.__module__.startswith("proselflc."):
                continue  # registered by another test's plugin
            row = next(line for line in options_page.splitlines() if line.startswith(f"| `{name}` |"))
            for option in registry.entry(name).params:
                assert f"`{option}` = " in row, f"{registry.section}.{option} of {name!r} is not in options.md"
    metrics_page = (REFERENCE / "metrics.md").read_text(encoding="utf-8")
    for metric in metric_table.METRICS:
        assert f"| `{metric.name}` | {metric.doc.split()[0]}" in metrics_page, metric.name


def test_mkdocs_builds_the_site_strictly_and_offline(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "WARNING" not in log, log
    site = tmp_path / "site"
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "make demo" in home and 'href="tune.html"' in home  # the README, its docs/ links re-pointed
    benchmarks = (site / "benchmarks.html").read_text(encoding="utf-8")
    assert "Cluster utilisation" in benchmarks and "The benchmark commands" in benchmarks
    assert (site / "search" / "search_index.json").exists()
    assert (site / "reference" / "run-config.html").exists()
