"""Each export escapes by its format: HTML in report.html, OWASP's leading ' in CSV and Excel text cells.

A sweep's names and params and a published CSV's `source` come from files other people may write; the
tests put formulas and markup in them and read the written files back.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from proselflc.analysis.published import read_published
from proselflc.analysis.report import write_report
from proselflc.analysis.tables import spreadsheet_safe
from test_analysis_sweeps import Study, Trial, write_sweep

SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://evil.example","x")'
IMG = "<img src=x onerror=alert(2)>"


def _hostile_sweep(root: Path) -> Path:
    params = {"optim.lr": 0.1, "model.note": FORMULA, "loss.tag": "@SUM(1+1)", "loss.shift": -0.5, "model.html": IMG}
    trials = [Trial(params, {"val_accuracy": [0.5, 0.6, 0.7, 0.8], "test_accuracy": [0.5, 0.6, 0.7, 0.75]}),
              Trial({**params, "optim.lr": 0.01}, {"val_accuracy": [0.4] * 4, "test_accuracy": [0.4] * 4})]
    studies = [Study("symmetric", 0.4, "crossentropy", trials, model="+mlp"),
               Study("symmetric", 0.2, "crossentropy", trials, model="mlp")]
    sweep = write_sweep(root, studies)
    manifest = json.loads((sweep / "manifest.json").read_text())
    manifest["sweep"] = SCRIPT
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    return sweep


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    out = root / "report"
    write_report(_hostile_sweep(root), out, formats=["csv", "xlsx", "html"], figures=False)
    return out


def test_report_html_escapes_the_sweep_name_and_every_value(report_dir: Path) -> None:
    for page in ("report.html", "results.html"):
        text = (report_dir / page).read_text()
        assert "<script" not in text and "<img src=x" not in text, page
    page = (report_dir / "report.html").read_text()
    assert "<title>Sweep &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "<h1>Sweep &lt;script&gt;alert(1)&lt;/script&gt;</h1>" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page


def test_csv_text_cells_starting_a_formula_are_quoted_and_numbers_stay_numbers(report_dir: Path) -> None:
    for name in ("best_configs", "trials", "dynamics"):
        with open(report_dir / f"{name}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows, name
        for row in rows:
            assert row["model.note"] == "'" + FORMULA, name
            assert row["loss.tag"] == "'@SUM(1+1)"
            assert row["model"] in ("'+mlp", "mlp")
            assert float(row["loss.shift"]) == -0.5  # a negative number is not text: no quote
            assert not any(value.startswith(("=", "+", "@", "\t", "\r")) for value in row.values())
    results = (report_dir / "results.csv").read_text()
    assert "'+mlp" in results and "\n+mlp" not in results and ",+mlp" not in results


def test_xlsx_holds_them_as_text_and_numbers_as_numbers(report_dir: Path) -> None:
    book = load_workbook(report_dir / "results.xlsx")
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"], "a live formula in results.xlsx"
    texts = {c.value for c in cells if c.data_type == "s"}
    assert "'" + FORMULA in texts and "'@SUM(1+1)" in texts and "'+mlp" in texts
    sheet = book["best_configs"]
    header = [c.value for c in sheet[1]]
    shift = sheet.cell(row=2, column=header.index("loss.shift") + 1)
    assert shift.value == -0.5 and shift.data_type == "n"


def test_spreadsheet_safe_touches_strings_only() -> None:
    frame = pd.DataFrame({"a": ["-x", "ok", None, "\tx", "\rx"], "b": [-1.0, 2.0, -3.5, 0.0, 1.0],
                          "c": [-1, "=1", 3, "+2", "@"]})
    safe = spreadsheet_safe(frame)
    assert safe["a"].fillna("").tolist() == ["'-x", "ok", "", "'\tx", "'\rx"]
    assert safe["b"].tolist() == [-1.0, 2.0, -3.5, 0.0, 1.0] and safe["b"].dtype == float
    assert safe["c"].tolist() == [-1, "'=1", 3, "'+2", "'@"]


def _published(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "published.csv"
    path.write_text("dataset,model,noise_kind,noise_rate,method,metric,value,source\n" + "\n".join(rows) + "\n")
    return path


def test_published_refuses_a_formula_source_and_duplicate_rows(tmp_path: Path) -> None:
    good = "digits,mlp,symmetric,0.4,crossentropy,test_accuracy,80.0,Wang et al. 2021 Table 2"
    assert len(read_published(_published(tmp_path, [good]))) == 1
    bad = good.replace("Wang et al. 2021 Table 2", '"=HYPERLINK(""http://evil"")"')
    with pytest.raises(ValueError, match=r"row 2: source .*HYPERLINK.* starts with '='"):
        read_published(_published(tmp_path, [bad]))
    with pytest.raises(ValueError, match=r"rows 2 and 4 .*same .*digits.*mlp.*symmetric.*0\.4.*crossentropy.*test_accuracy"):
        read_published(_published(tmp_path, [good, good.replace("0.4", "0.2"), good.replace("80.0", "81.0")]))
