"""`proselflc report SWEEP_DIR [--format ...] [--out DIR]` through the real CLI entry point."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from proselflc.analysis import summary
from proselflc.cli import main
from test_analysis_sweeps import small_sweep


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return small_sweep(tmp_path)


def test_report_prints_the_table_and_writes_every_export(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["report", str(sweep), "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "selected on noisy validation" in printed
    assert "**87.00 ± 1.41**" in printed and "| 50.00 " in printed
    written = {p.name for p in out.iterdir()}
    assert {
        "results.md",
        "results.csv",
        "results.tex",
        "results.xlsx",
        "results.html",
        "importance.csv",
        "search_cost.csv",
    } <= written
    assert not any(name.endswith((".png", ".pdf")) for name in written)
    assert f"to {out}" in printed
    table = pd.read_csv(out / "results.csv", header=[0, 1], index_col=0)
    assert table.loc[0.2, ("proselflc", "mean")] == pytest.approx(0.87)


def test_report_format_selects_exports_and_defaults_out_into_the_sweep(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(sweep), "--format", "csv", "--format", "tex", "--no-plots"]) == 0
    capsys.readouterr()
    written = sorted(p.name for p in (sweep / "report").iterdir())
    assert "results.tex" in written and "results.csv" in written
    assert not any(name.endswith((".png", ".md", ".xlsx", ".html")) for name in written)


def test_report_errors_are_one_paragraph_with_exit_code_2(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(sweep), "--select-by", "test_accuracy", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "clean labels" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["report", str(sweep), "--format", "pdf"])
    assert "invalid choice: 'pdf'" in capsys.readouterr().err


def test_summary_is_the_table_the_quickstart_prints(sweep: Path) -> None:
    text = summary(sweep)
    assert "**87.00 ± 1.41**" in text
    assert "Search cost: 29 of 36 epochs trained (11% saved by early stopping; 8% not run: trials diverged or errored)." in text
    assert "Oracle gap" in text


def test_a_study_whose_trials_all_errored_shows_an_empty_cell(sweep: Path) -> None:
    for trial in (sweep / "symmetric-0.4/proselflc/search").iterdir():
        if trial.is_dir():
            (trial / "result.json").write_text("")
            (trial / "progress.csv").unlink()
            (trial / "error.txt").write_text("RuntimeError: boom\n")
    row = summary(sweep).splitlines()[5]
    assert row.split("|")[2:4] == [" **50.00**      ", " –                "]


def test_a_sweep_without_results_is_reported_as_such(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for study in sweep.iterdir():
        if study.is_dir():
            shutil.rmtree(study)
    assert "has no trial results yet" in summary(sweep)
    assert main(["report", str(sweep)]) == 2
    assert "has no trial results yet" in capsys.readouterr().err
