"""`report` on a sweep that is still running says so on its first line; `--strict` refuses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from proselflc.analysis.progress import NO_STATUS, read_progress
from proselflc.cli import main
from proselflc.config import ConfigError
from proselflc.sweep_contract import MANIFEST_FILE

pytestmark = pytest.mark.ray  # every test reads a copy of the tiny (real Ray) sweep


def copy_with_statuses(tiny_sweep: Path, tmp_path: Path, statuses: dict[int, str | None]) -> Path:
    """A copy of the finished tiny sweep whose manifest gives study i the status statuses[i] (None: no key)."""
    copy = tmp_path / tiny_sweep.name
    shutil.copytree(tiny_sweep, copy, ignore=shutil.ignore_patterns("report"))
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    for i, status in statuses.items():
        if status is None:
            manifest["studies"][i].pop("status")
        else:
            manifest["studies"][i]["status"] = status
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return copy


def test_a_running_sweep_is_marked_partial_on_the_first_line(tiny_sweep, tmp_path, capsys):
    sweep = copy_with_statuses(tiny_sweep, tmp_path, {1: "searching", 3: "searched"})
    studies = [s["study"] for s in json.loads((sweep / MANIFEST_FILE).read_text())["studies"]]
    out_dir = tmp_path / "out"
    assert main(["report", str(sweep), "--out", str(out_dir), "--no-plots", "--format", "md"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PARTIAL: sweep 'tiny' is still running or was stopped: 2 of 4 studies unfinished")
    assert lines[1:3] == [f"unfinished: {studies[1]} (searching)", f"unfinished: {studies[3]} (searched)"]
    assert (out_dir / "results.md").read_text().startswith(lines[0])


def test_strict_refuses_a_running_sweep_naming_its_unfinished_studies(tiny_sweep, tmp_path, capsys):
    sweep = copy_with_statuses(tiny_sweep, tmp_path, {0: "pending"})
    first = json.loads((sweep / MANIFEST_FILE).read_text())["studies"][0]["study"]
    assert main(["report", str(sweep), "--strict", "--no-plots"]) == 2
    captured = capsys.readouterr()
    assert f"{first} (pending)" in captured.err and "drop --strict" in captured.err
    assert captured.out == "" and not (sweep / "report").exists()


def test_a_finished_sweep_reports_as_before_and_passes_strict(tiny_sweep, tmp_path, capsys):
    assert main(["report", str(tiny_sweep), "--strict", "--no-plots", "--out", str(tmp_path / "out")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("Clean test accuracy")
    assert not read_progress(tiny_sweep).running


def test_only_finished_counts_as_done_in_older_manifests(tiny_sweep, tmp_path):
    sweep = copy_with_statuses(tiny_sweep, tmp_path, {2: None})
    progress = read_progress(sweep)
    assert list(progress.unfinished.values()) == [NO_STATUS]
    with pytest.raises(ConfigError, match=NO_STATUS):
        progress.require_finished()


def test_a_sweep_read_from_a_local_copy_is_named_as_the_user_named_it(tiny_sweep, tmp_path):
    """A URI sweep is reported from a local copy: `--strict` names the URI, not the temporary directory."""
    sweep = copy_with_statuses(tiny_sweep, tmp_path, {0: "searching"})
    with pytest.raises(ConfigError, match=r"sweep 's3://bucket/results/tiny' is not finished"):
        read_progress(sweep, shown_as="s3://bucket/results/tiny").require_finished()
