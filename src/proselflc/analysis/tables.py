"""The paper table: rows noise rates, columns methods, cells mean ± std test accuracy, best in bold.

The numbers live in three aligned frames (mean, std, n); each export renders them its own way:
Markdown and HTML/LaTeX for reading and pasting, CSV and the Excel numeric sheet for reading back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from proselflc.analysis.load import GROUP_KEYS
from proselflc.io import atomic_write_text

ROW_KEYS = [k for k in GROUP_KEYS if k != "method"]
#: Export formats of `proselflc report`.
FORMATS = ("md", "csv", "tex", "xlsx", "html")
SOURCES = ("auto", "final", "selected", "selected_end", "oracle")
Source = Literal["auto", "final", "selected", "selected_end", "oracle"]
_SINGLE = {"selected": "test_accuracy", "selected_end": "test_accuracy_end", "oracle": "oracle_test_accuracy"}
#: A spreadsheet reads a text cell starting with one of these as a formula (OWASP, "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: object) -> object:
    """A string that a spreadsheet would run, with a leading ' (shown as text); anything else unchanged."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


def _text_labels(index: pd.Index) -> pd.Index:
    if len(index) == 0:
        return index
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(map(_text_cell, key)) for key in index], names=index.names)
    return index.map(_text_cell) if index.dtype == object else index


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` for CSV and Excel: text cells, column labels and index values that start with = + - @ tab or
    CR get a leading ' (OWASP's rule), so a spreadsheet shows them as text; numbers (negative ones too) stay
    numbers. Values in a sweep's params, a study's names or a published CSV's source reach these cells."""
    out = frame.copy()
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
            out.isetitem(i, column.astype(object).map(_text_cell))
    out.columns = _text_labels(out.columns)
    out.index = _text_labels(out.index)
    return out


@dataclass
class ResultsTable:
    """Aligned mean/std/n frames (index: row keys, columns: methods) plus how to label them."""

    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    source: str
    percent: bool

    def best(self) -> pd.DataFrame:
        """True where a cell holds its row's highest mean (ties all bold; empty cells never)."""
        row_max = self.mean.max(axis=1, skipna=True)
        return self.mean.eq(row_max, axis=0) & self.mean.notna()

    def cells(self, bold: tuple[str, str] = ("", ""), pm: str = " ± ", missing: str = "–") -> pd.DataFrame:
        """Display strings: 'mean ± std' (or just the mean for one run), wrapped in `bold` when best."""
        scale = 100.0 if self.percent else 1.0
        best = self.best()
        out = pd.DataFrame("", index=self.mean.index, columns=self.mean.columns, dtype=object)
        for r in range(len(self.mean.index)):
            for c in range(len(self.mean.columns)):
                mean, std = self.mean.iat[r, c], self.std.iat[r, c]
                if pd.isna(mean):
                    out.iat[r, c] = missing
                    continue
                text = f"{mean * scale:.2f}" + ("" if pd.isna(std) else f"{pm}{std * scale:.2f}")
                out.iat[r, c] = f"{bold[0]}{text}{bold[1]}" if best.iat[r, c] else text
        return out

    def caption(self) -> str:
        unit = "test accuracy (%)" if self.percent else "test accuracy"
        what = {
            "auto": "final-seed re-runs of the config selected on noisy validation (mean ± std over seeds; "
            "a single value where no re-runs exist)",
            "final": "final-seed re-runs of the config selected on noisy validation (mean ± std over seeds)",
            "selected": "the search trial selected on noisy validation, at its selected epoch",
            "selected_end": "the search trial selected on noisy validation, at its last epoch",
            "oracle": "ORACLE: the search trial (epoch) with the best test accuracy (not a valid selection)",
        }[self.source]
        return f"Clean {unit} of {what}; best per row in bold."

    def numeric(self) -> pd.DataFrame:
        """Wide numeric frame with (method, mean|std|n) columns: what the CSV holds."""
        parts = {"mean": self.mean, "std": self.std, "n": self.n}
        wide = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1)
        methods = list(self.mean.columns)
        return wide.reindex(
            columns=pd.MultiIndex.from_product([methods, list(parts)], names=["method", "stat"])
        )

    def long(self) -> pd.DataFrame:
        """One row per (row keys, method) with mean, std, n and best: the Excel numeric sheet."""
        frames = {"mean": self.mean, "std": self.std, "n": self.n, "best": self.best()}
        stacked = pd.concat({k: v.stack(future_stack=True) for k, v in frames.items()}, axis=1)
        return stacked.reset_index()

    def flat(self, bold: tuple[str, str] = ("", ""), pm: str = " ± ", missing: str = "–") -> pd.DataFrame:
        """Row keys as leading string columns (noise rate as 0.4, not 0.400000), then the method cells."""
        cells = self.cells(bold=bold, pm=pm, missing=missing)
        keys = cells.index.to_frame(index=False).astype(object)
        keys["noise_rate"] = [f"{r:g}" for r in keys["noise_rate"]]
        keys.columns = [str(c).replace("_", " ") for c in keys.columns]
        out = pd.concat([keys, cells.reset_index(drop=True)], axis=1)
        out.columns = [str(c) for c in out.columns]
        return out

    def to_markdown(self) -> str:
        return self.flat(bold=("**", "**")).to_markdown(index=False)

    def to_csv(self, path: str | Path) -> Path:
        return atomic_write_text(path, spreadsheet_safe(self.numeric()).to_csv())

    def styler(self, pm: str = " ± ", missing: str = "–") -> Styler:
        """Flat cells with the row best in bold as CSS, which HTML shows and LaTeX/Excel convert."""
        flat = self.flat(pm=pm, missing=missing)
        n_keys = self.mean.index.nlevels
        best = self.best().to_numpy()

        def css(frame: pd.DataFrame) -> pd.DataFrame:
            marks = np.full(frame.shape, "", dtype=object)
            marks[:, n_keys:] = np.where(best, "font-weight: bold;", "")
            return pd.DataFrame(marks, index=frame.index, columns=frame.columns)

        return flat.style.apply(css, axis=None).hide(axis="index")

    def html_styler(self) -> Styler:
        """`styler()` with every cell and heading HTML-escaped (a Styler does not escape by itself)."""
        return self.styler().format(escape="html").format_index(escape="html", axis=1)

    def excel_styler(self) -> Styler:
        """`styler()` over `spreadsheet_safe` cells: what the Excel sheets hold."""
        styler = self.styler()
        styler.data = spreadsheet_safe(styler.data)
        return styler

    def to_html(self) -> str:
        return self.html_styler().set_caption(self.caption()).to_html()

    def to_latex(self) -> str:
        """A booktabs table (\\toprule/\\midrule/\\bottomrule) with \\bfseries on the row best."""
        n_keys = self.mean.index.nlevels
        styler = self.styler(pm=r" $\pm$ ", missing="--").format_index(escape="latex", axis=1)
        styler = styler.format(escape="latex", subset=list(styler.data.columns[:n_keys]))
        caption = _tex_escape(self.caption()).replace("±", r"$\pm$")
        return styler.to_latex(
            hrules=True,
            convert_css=True,
            caption=caption,
            column_format="l" * n_keys + "c" * len(self.mean.columns),
            position="t",
            position_float="centering",
        )


def results_table(best: pd.DataFrame, source: Source = "auto", percent: bool | None = None) -> ResultsTable:
    """Pivot `best_configs` output into the paper table.

    source: "final" (mean ± std of the final-seed re-runs), "selected" / "selected_end" (the selected
    search trial at its selected / last epoch), "oracle" (best by test: shown for contrast only), or
    "auto" (final where a study has re-runs, else selected). percent: scale accuracies by 100
    (default: when every value is within [0, 1]).
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r}; valid: {', '.join(SOURCES)}")
    missing = [k for k in GROUP_KEYS if k not in best.columns]
    if missing:
        raise ValueError(f"results_table needs best_configs() output; missing column(s) {', '.join(missing)}")
    mean, std, n = _values(best, source)
    frame = best[GROUP_KEYS].assign(_mean=mean, _std=std, _n=n)
    rows = _row_keys(best)
    methods = list(dict.fromkeys(best["method"]))
    pivots = [
        frame.pivot_table(
            index=rows, columns="method", values=v, aggfunc="first", dropna=False, sort=False
        ).reindex(columns=methods)
        for v in ("_mean", "_std", "_n")
    ]
    for p in pivots:
        p.columns.name = "method"
    if percent is None:
        values = pivots[0].to_numpy(dtype=float)
        percent = bool(np.all(values[np.isfinite(values)] <= 1.0))
    mean_t, std_t, n_t = (p.sort_index(level="noise_rate", sort_remaining=False) for p in pivots)
    return ResultsTable(mean=mean_t, std=std_t, n=n_t, source=source, percent=percent)


def _values(best: pd.DataFrame, source: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    nan = pd.Series(np.nan, index=best.index)
    if source in _SINGLE:
        col = _SINGLE[source]
        mean = pd.to_numeric(best[col], errors="coerce") if col in best else nan
        return mean, nan, mean.notna().astype(float)
    final_n = pd.to_numeric(best.get("final_n", pd.Series(0, index=best.index)), errors="coerce").fillna(0)
    final_mean = pd.to_numeric(best["final_mean"], errors="coerce") if "final_mean" in best else nan
    final_std = pd.to_numeric(best["final_std"], errors="coerce") if "final_std" in best else nan
    if source == "final":
        return final_mean.where(final_n > 0), final_std.where(final_n > 0), final_n
    selected = pd.to_numeric(best["test_accuracy"], errors="coerce") if "test_accuracy" in best else nan
    has_final = final_n > 0
    mean = final_mean.where(has_final, selected)
    std = final_std.where(has_final, np.nan)
    n = final_n.where(has_final, selected.notna().astype(float))
    return mean, std, n


def _row_keys(best: pd.DataFrame) -> list[str]:
    """The row keys that vary, plus noise_rate always: a one-dataset sweep needs no dataset column."""
    return [k for k in ROW_KEYS if k == "noise_rate" or best[k].nunique(dropna=False) > 1]


def _tex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text


def memorisation_table(best: pd.DataFrame) -> pd.DataFrame:
    """Rows noise rates, columns methods, cells 'noisy_fit / noisy_corrected' in % of the noisy subset.

    noisy_fit: how much of the noisy subset the selected configuration fits with its *noisy* labels
    (memorisation); noisy_corrected: with its *true* labels (correction). From the final-seed re-runs'
    last epoch (mean over seeds), or the selected search trial's last epoch where a study has no re-runs.
    """
    missing = [k for k in GROUP_KEYS if k not in best.columns]
    if missing:
        raise ValueError(f"memorisation_table needs best_configs() output; missing column(s) {', '.join(missing)}")
    has_final = pd.to_numeric(best.get("final_n", pd.Series(0, index=best.index)), errors="coerce").fillna(0) > 0
    values = {}
    for col in ("noisy_fit", "noisy_corrected"):
        final = pd.to_numeric(best.get(f"final_{col}", np.nan), errors="coerce")
        selected = pd.to_numeric(best.get(f"{col}_end", np.nan), errors="coerce")
        values[col] = pd.Series(np.where(has_final, final, selected), index=best.index)
    cell = [
        "–" if pd.isna(fit) and pd.isna(corrected) else f"{100 * fit:.1f} / {100 * corrected:.1f}"
        for fit, corrected in zip(values["noisy_fit"], values["noisy_corrected"], strict=True)
    ]
    return _method_grid(best, cell)


def _method_grid(best: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """One text cell per study: rows noise settings, columns methods in the sweep's order, '–' where none."""
    frame = best[GROUP_KEYS].assign(_cell=cells)
    methods = list(dict.fromkeys(best["method"]))
    table = frame.pivot_table(
        index=_row_keys(best), columns="method", values="_cell", aggfunc="first", dropna=False, sort=False
    ).reindex(columns=methods)
    table.columns.name = "method"
    table = table.sort_index(level="noise_rate", sort_remaining=False).fillna("–")
    table.index.names = [name.replace("_", " ") for name in table.index.names]
    return table


def absent_metrics_notes(best: pd.DataFrame) -> list[str]:
    """Why memorisation or the test metrics are absent for a dataset: the true labels they need are not in its data.

    Real noise used as given (`noise.kind: none`, a real-noise dataset) without clean labels for the training
    set leaves noisy_fit / noisy_corrected / clean_fit NaN; a dataset without a clean test set, the test metrics.
    """
    if "dataset" not in best.columns:
        return []

    def measured(rows: pd.DataFrame, metric: str) -> bool:
        cols = [c for c in (f"final_{metric}", f"{metric}_end") if c in rows.columns]
        return any(pd.to_numeric(rows[c], errors="coerce").notna().any() for c in cols)

    notes = []
    for dataset, rows in best.groupby("dataset", sort=False):
        # Synthetic noise at rate 0 has no noisy example to measure: nothing is missing there.
        noisy = rows[(rows["noise_kind"] == "none") | (pd.to_numeric(rows["noise_rate"], errors="coerce") > 0)]
        if len(noisy) and not measured(noisy, "noisy_fit"):
            notes.append(
                f"Memorisation is absent: noisy_fit / noisy_corrected / clean_fit need the true labels of the training "
                f"set, and dataset {dataset!r} has no clean labels for it (its noisy labels are used as given; a "
                "table's clean_label_column provides them)."
            )
        if not measured(rows, "test_accuracy"):
            notes.append(
                f"Test metrics are absent: dataset {dataset!r} has no clean test set (imagefolder: data.test_root; "
                "table: data.test, or a clean_label_column to hold clean rows out)."
            )
    return notes


#: The caption every export gives the memorisation table.
MEMORISATION_CAPTION = (
    "Memorisation of the noisy labels: noisy_fit / noisy_corrected (%), the share of the noisy training subset the "
    "selected configuration predicts as its noisy label / as its true label (final re-runs, last epoch). Memorising "
    "the noise means a high first number; correcting it, a high second one."
)


def certainty_cell(row: pd.Series) -> str:
    """'0.93 · n_eff 24 of 202', or 'n/a: <why>' where the certainty cannot be computed (never a made-up number)."""
    p, n_val, n_eff = (pd.to_numeric(row.get(c), errors="coerce") for c in ("certainty", "n_val", "n_eff"))
    note = row.get("certainty_note")
    head = f"{p:.2f}" if pd.notna(p) else f"n/a: {note if isinstance(note, str) and note else 'no selection'}"
    if pd.notna(n_val):
        head += f" · n_eff {n_eff:.0f} of {n_val:.0f}" if pd.notna(n_eff) else f" · n_val {n_val:.0f}, n_eff n/a"
    return head


def certainty_table(best: pd.DataFrame) -> pd.DataFrame:
    """Rows noise rates, columns methods, cells: P(the selected config beats its runner-up) and the effective
    validation size (`certainty_cell`); see `proselflc.selection_certainty`."""
    missing = [k for k in GROUP_KEYS if k not in best.columns]
    if missing:
        raise ValueError(f"certainty_table needs best_configs() output; missing column(s) {', '.join(missing)}")
    return _method_grid(best, [certainty_cell(row) for _, row in best.iterrows()])


#: The caption every export gives the certainty table.
CERTAINTY_CAPTION = (
    "How sure each selection is: P(the selected configuration beats its runner-up), a paired bootstrap over the "
    "noisy validation examples (last epoch), and n_eff = n_val x kappa^2, the clean validation size that would "
    "separate two configurations as well (kappa = mean diag T - mean offdiag T of the noise's transition matrix T). "
    "Below 0.9 the selection is close to a coin toss between the two."
)
