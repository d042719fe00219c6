"""Everything `proselflc report` writes, as one function, and the short summary a sweep ends with."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import pandas as pd

from proselflc.analysis import plots
from proselflc.analysis.importances import cost_sentence, importance, search_cost
from proselflc.analysis.load import load_sweep
from proselflc.analysis.page import write_page
from proselflc.analysis.progress import read_progress
from proselflc.analysis.published import compare, display, read_published
from proselflc.analysis.published import to_latex as published_latex
from proselflc.analysis.report_views import Report
from proselflc.analysis.robust import ROBUST_CAPTION, robust_across_rates, robust_row
from proselflc.analysis.select import best_configs, selection_mode, trial_summary
from proselflc.analysis.tables import (
    CERTAINTY_CAPTION,
    FORMATS,
    MEMORISATION_CAPTION,
    absent_metrics_notes,
    certainty_table,
    memorisation_table,
    results_table,
    spreadsheet_safe,
)
from proselflc.errors import closest
from proselflc.io import atomic_write, atomic_write_text
from proselflc.selection_certainty import describe


class NoResults(ValueError):
    """The sweep directory is valid but no trial has reported an epoch yet."""


def build_report(
    sweep_dir: str | Path,
    select_by: str | None = None,
    scope: Literal["last", "all"] = "last",
    mode: Literal["max", "min"] | None = None,
) -> Report:
    """Load a sweep and compute every view (no files written); see `best_configs` for the arguments.

    select_by/mode default to the sweep's own metric and mode; another metric's mode defaults to its
    better direction in the metric table (see `selection_mode`).
    """
    df = load_sweep(sweep_dir)
    if df["epoch"].notna().sum() == 0:
        raise NoResults(f"sweep {str(sweep_dir)!r} has no trial results yet (run or resume `proselflc tune`)")
    select_by = select_by or df.attrs.get("metric", "val_accuracy")
    mode = selection_mode(df, select_by, mode)
    best = best_configs(df, select_by=select_by, mode=mode, scope=scope)
    return Report(
        trials=trial_summary(df, select_by, mode),
        best=best,
        table=results_table(best),
        oracle=results_table(best, source="oracle"),
        importance=importance(df, select_by=select_by, mode=mode),
        cost=search_cost(df),
        dynamics=dynamics(df, best),
        memorisation=memorisation_table(best),
        certainty=certainty_table(best),
        progress=read_progress(sweep_dir),
        robust=robust_across_rates(df, select_by=select_by, mode=mode),
    )


def dynamics(df: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch rows of the selected search trials and of every final-seed re-run."""
    if "trial_id" not in best:
        return df.iloc[0:0]
    chosen = best.dropna(subset=["trial_id"])[["study", "trial_id"]].assign(phase="search")
    selected = df.merge(chosen, on=["study", "phase", "trial_id"])
    final = df[df["phase"] == "final"]
    out = pd.concat([selected, final], ignore_index=True).dropna(subset=["epoch"])
    return out.sort_values(["study", "phase", "trial_id", "epoch"], kind="mergesort").reset_index(drop=True)


def write_report(
    sweep_dir: str | Path,
    out: str | Path | None = None,
    formats: tuple[str, ...] | list[str] = FORMATS,
    select_by: str | None = None,
    figures: bool = True,
    scope: Literal["last", "all"] = "last",
    mode: Literal["max", "min"] | None = None,
    published: str | Path | None = None,
) -> Report:
    """Compute every view; write the chosen exports and the plots to `out` (default <sweep>/report).

    `published`: a CSV of published numbers (see `analysis.published`) shown beside the reproduced ones.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format {unknown[0]!r}; {closest(unknown[0], FORMATS)}")
    published_rows = read_published(published) if published is not None else None  # bad CSV: fail first
    report = build_report(sweep_dir, select_by, scope, mode)
    if published_rows is not None:
        report.published = compare(published_rows, report.best, report.table, report.dynamics)
    out = Path(out) if out is not None else Path(sweep_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    writers = {
        "md": _write_md,
        "csv": _write_csv,
        "tex": _write_tex,
        "xlsx": _write_xlsx,
        "html": _write_html,
    }
    for fmt in dict.fromkeys(formats):
        report.files.extend(writers[fmt](report, out))
    if figures:
        report.files.extend(_write_figures(report, out))
    return report


def summary(sweep_dir: str | Path, select_by: str | None = None) -> str:
    """The results table of a finished sweep as Markdown with a one-line caption and the search cost."""
    try:
        report = build_report(sweep_dir, select_by)
    except NoResults as exc:
        return str(exc)
    lines = [report.table.caption(), "", report.table.to_markdown(), "", *robust_md(report)]
    lines += [MEMORISATION_CAPTION, "", report.memorisation.to_markdown(), ""]
    lines += [*absent_metrics_notes(report.best)]
    lines += ["Selection certainty (P(the selected config beats its runner-up), paired bootstrap of noisy validation):"]
    lines += [f"  {row['study']}: {_certainty_phrase(row)}" for _, row in report.best.iterrows()]
    lines.append("")
    if "gap" in report.best and report.best["gap"].notna().any():
        scale = 100.0 if report.table.percent else 1.0
        lines.append(
            f"Oracle gap (best by test minus selected, search trials): "
            f"mean {report.best['gap'].mean() * scale:.2f}, max {report.best['gap'].max() * scale:.2f}."
        )
    cost = cost_sentence(report.cost)
    if cost:
        lines.append(cost)
    return "\n".join(lines)


def _certainty_phrase(row: pd.Series) -> str:
    value = lambda col: None if pd.isna(row.get(col, float("nan"))) else row[col]
    if value("trial_id") is None:
        return "n/a (no selection: no search trial reported a usable score)"
    return describe(value("certainty"), str(value("certainty_note") or ""), value("n_val"), value("n_eff"))


def _write_md(report: Report, out: Path) -> list[Path]:
    path = out / "results.md"
    progress = report.progress
    partial = [progress.headline(), "", *progress.marks(), ""] if progress and progress.running else []
    parts = [
        *partial,
        "## Results",
        "",
        report.table.caption(),
        "",
        report.table.to_markdown(),
        "",
        *robust_md(report),
        "## Memorisation",
        "",
        MEMORISATION_CAPTION,
        "",
        report.memorisation.to_markdown(),
        "",
        *(f"{note}\n" for note in absent_metrics_notes(report.best)),
        "## Selection certainty",
        "",
        CERTAINTY_CAPTION,
        "",
        report.certainty.to_markdown(),
        "",
        "## Oracle (best by test accuracy, for contrast)",
        "",
        report.oracle.to_markdown(),
        "",
        "## Selected configurations",
        "",
        report.best.to_markdown(index=False),
        "",
        "## Search cost",
        "",
        report.cost.to_markdown(index=False),
        "",
    ]
    if not report.importance.empty:
        parts += ["## Hyperparameter importance (fANOVA)", "", report.importance.to_markdown(index=False), ""]
    if report.published is not None:
        parts += ["## Published vs. reproduced (%)", "", display(report.published).to_markdown(index=False), ""]
    return [atomic_write_text(path, "\n".join(parts))]


def robust_md(report: Report) -> list[str]:
    """The 'robust across rates' row under the per-rate table, once a sweep has more than one noise setting."""
    robust = report.robust
    if robust.empty or not (robust["n_settings"] > 1).any():
        return []
    return [ROBUST_CAPTION, "", robust_row(robust, report.table.percent).to_markdown(disable_numparse=True), ""]


def _write_csv(report: Report, out: Path) -> list[Path]:
    paths = [report.table.to_csv(out / "results.csv")]
    for name, frame in report.frames().items():
        paths.append(atomic_write_text(out / f"{name}.csv", spreadsheet_safe(frame).to_csv(index=False)))
    return paths


def _write_tex(report: Report, out: Path) -> list[Path]:
    paths = [
        atomic_write_text(out / "results.tex", report.table.to_latex()),
        atomic_write_text(out / "oracle.tex", report.oracle.to_latex()),
        atomic_write_text(
            out / "memorisation.tex",
            report.memorisation.to_latex(caption=MEMORISATION_CAPTION, label="tab:memorisation", position="t"),
        ),
        atomic_write_text(
            out / "certainty.tex",
            report.certainty.to_latex(caption=CERTAINTY_CAPTION, label="tab:certainty", position="t"),
        ),
    ]
    if report.published is not None:
        paths.append(atomic_write_text(out / "published.tex", published_latex(report.published)))
    return paths


def _write_html(report: Report, out: Path) -> list[Path]:
    """results.html (the tables alone) and report.html (the whole sweep on one self-contained page)."""
    path = out / "results.html"
    body = [
        "<h2>Results</h2>",
        report.table.to_html(),
        "<h2>Memorisation</h2>",
        f"<p>{MEMORISATION_CAPTION}</p>",
        report.memorisation.to_html(),
        "<h2>Selection certainty</h2>",
        f"<p>{CERTAINTY_CAPTION}</p>",
        report.certainty.to_html(),
        "<h2>Oracle (best by test accuracy, for contrast)</h2>",
        report.oracle.to_html(),
        "<h2>Selected configurations</h2>",
        report.best.to_html(index=False, na_rep=""),
        "<h2>Search cost</h2>",
        report.cost.to_html(index=False),
        "<h2>Hyperparameter importance (fANOVA)</h2>",
        report.importance.to_html(index=False),
    ]
    if report.published is not None:
        body += ["<h2>Published vs. reproduced (%)</h2>", display(report.published).to_html(index=False)]
    atomic_write_text(
        path,
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>proselflc report</title></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n",
    )
    return [path, write_page(report, out / "report.html")]


def _write_xlsx(report: Report, out: Path) -> list[Path]:
    """One sheet per view; 'results' keeps the bold row best, 'results_numeric' reads back as numbers.

    The workbook is built in memory and written in one atomic step: a full disk then leaves no half-written
    file and no open zip archive behind (openpyxl's, closed again at garbage collection, would fail again).
    """
    book = io.BytesIO()
    with pd.ExcelWriter(book, engine="openpyxl") as writer:
        report.table.excel_styler().to_excel(writer, sheet_name="results")
        spreadsheet_safe(report.table.long()).to_excel(writer, sheet_name="results_numeric", index=False)
        report.oracle.excel_styler().to_excel(writer, sheet_name="oracle")
        for name, frame in report.frames().items():
            spreadsheet_safe(frame).to_excel(writer, sheet_name=name, index=False)
    return [atomic_write(out / "results.xlsx", lambda fh: fh.write(book.getvalue()))]


def _write_figures(report: Report, out: Path) -> list[Path]:
    paths = plots.save(plots.accuracy_vs_noise(report.table), out, "accuracy_vs_noise")
    for stem, fig in plots.learning_curves(report.dynamics, report.best):
        paths += plots.save(fig, out, stem)
    bars = plots.importance_bars(report.importance)
    if bars is not None:
        paths += plots.save(bars, out, "importance")
    return paths


__all__ = ["FORMATS", "NoResults", "Report", "build_report", "dynamics", "robust_md", "summary", "write_report"]
