"""Published numbers beside reproduced ones: what `proselflc report --published FILE` adds to a report.

The CSV holds one published number per row, in percent, keyed like the sweep's studies:
`dataset, model, noise_kind, noise_rate, method, metric, value, source` (metric: test_accuracy,
noisy_fit, noisy_corrected or clean_fit; source: where the number comes from). A reproduced number is
the mean ± std over the study's final-seed re-runs (the selected search trial where none exist), the
same cell the results table shows for test accuracy; fit metrics are taken at each run's last epoch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from proselflc.analysis.load import GROUP_KEYS
from proselflc.analysis.tables import FORMULA_START, ResultsTable
from proselflc.errors import closest

COLUMNS = (*GROUP_KEYS, "metric", "value", "source")
METRICS = ("test_accuracy", "noisy_fit", "noisy_corrected", "clean_fit")
OUTPUT_COLUMNS = [*GROUP_KEYS, "metric", "published", "reproduced_mean", "reproduced_std", "n", "difference", "source"]


def read_published(path: str | Path) -> pd.DataFrame:
    """The published CSV, checked row by row (errors name the file, the row, the column and the value)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--published: {str(path)!r} is not a file")
    try:
        frame = pd.read_csv(path, dtype={"source": str}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"--published: {str(path)!r} is not a readable CSV ({str(exc).strip()})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"--published: {str(path)!r} lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    for i, row in frame.iterrows():
        where = f"--published: {str(path)!r} row {int(i) + 2}"  # +2: the header is line 1
        if row["metric"] not in METRICS:
            raise ValueError(f"{where}: metric {row['metric']!r} is not one of them; {closest(str(row['metric']), METRICS)}")
        for column, low, high in (("noise_rate", 0.0, 1.0), ("value", 0.0, 100.0)):
            number = pd.to_numeric(row[column], errors="coerce")
            if pd.isna(number) or not low <= number <= high:
                raise ValueError(f"{where}: {column} {row[column]!r} must be a number in [{low:g}, {high:g}] (value in %)")
        for column in ("dataset", "model", "noise_kind", "method"):
            if pd.isna(row[column]) or not str(row[column]).strip():
                raise ValueError(f"{where}: {column} is empty")
        source = "" if pd.isna(row["source"]) else str(row["source"])
        if source.startswith(FORMULA_START):
            raise ValueError(
                f"{where}: source {source[:80]!r} starts with {source[0]!r}, which a spreadsheet runs as a formula; "
                "a source is a citation (e.g. 'Wang et al. 2021, Table 2'): write it without that first character"
            )
    _refuse_duplicates(frame, path)
    frame = frame[list(COLUMNS)].copy()
    frame["noise_rate"] = frame["noise_rate"].astype(float)
    frame["value"] = frame["value"].astype(float)
    frame["source"] = frame["source"].fillna("")
    return frame


def _refuse_duplicates(frame: pd.DataFrame, path: Path) -> None:
    """Two rows for one study and metric would each be compared, and a table would show the number twice."""
    keys = [*GROUP_KEYS, "metric"]
    key = frame[keys].astype(str).assign(noise_rate=pd.to_numeric(frame["noise_rate"]).round(6).astype(str))
    repeated = key.duplicated(keep=False)
    if repeated.any():
        first = key[repeated].iloc[0]
        lines = [int(i) + 2 for i in key.index[(key == first).all(axis=1)]]
        raise ValueError(
            f"--published: {str(path)!r} rows {lines[0]} and {lines[1]} give the same "
            f"{', '.join(f'{k} {first[k]}' for k in keys)}; keep one published number per study and metric"
        )


def reproduced(best: pd.DataFrame, table: ResultsTable, dynamics: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n (in %) per study and metric: test accuracy as in the results table, fit metrics at the end."""
    long = table.long().rename(columns={"mean": "reproduced_mean", "std": "reproduced_std"})
    for key in GROUP_KEYS:  # the table drops row keys that do not vary: they are constant in `best`
        if key not in long:
            long[key] = best[key].iloc[0]
    scale = 100.0 if table.percent else 1.0
    acc = long.assign(metric="test_accuracy")
    acc["reproduced_mean"] = acc["reproduced_mean"] * scale
    acc["reproduced_std"] = acc["reproduced_std"] * scale
    parts = [acc[[*GROUP_KEYS, "metric", "reproduced_mean", "reproduced_std", "n"]]]
    fits = [m for m in METRICS[1:] if m in dynamics]
    if fits and not dynamics.empty:
        last = dynamics.sort_values("epoch", kind="mergesort").groupby(["study", "phase", "trial_id"]).tail(1)
        has_final = last.groupby("study")["phase"].transform(lambda p: (p == "final").any())
        runs = last[(last["phase"] == "final") | ~has_final]
        for metric in fits:
            stats = runs.groupby(GROUP_KEYS)[metric].agg(["mean", "std", "count"]).reset_index()
            parts.append(stats.assign(
                metric=metric, reproduced_mean=stats["mean"] * 100.0, reproduced_std=stats["std"] * 100.0,
                n=stats["count"].astype(float),
            )[[*GROUP_KEYS, "metric", "reproduced_mean", "reproduced_std", "n"]])  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def compare(published: pd.DataFrame, best: pd.DataFrame, table: ResultsTable, dynamics: pd.DataFrame) -> pd.DataFrame:
    """One row per published number: published, reproduced mean ± std (n runs) and their difference, in %.

    Rows whose study is not in the sweep keep NaN reproduced values, so a table of a partial sweep
    still shows every published number.
    """
    ours = reproduced(best, table, dynamics)
    for key in GROUP_KEYS:
        if key != "noise_rate":
            ours[key] = ours[key].astype(str)
    keyed = published.assign(**{k: published[k].astype(str) for k in GROUP_KEYS if k != "noise_rate"})
    ours["noise_rate"] = ours["noise_rate"].astype(float).round(6)
    keyed["_rate"] = keyed["noise_rate"].round(6)
    merged = keyed.merge(
        ours.rename(columns={"noise_rate": "_rate"}), on=["dataset", "model", "noise_kind", "_rate", "method", "metric"],
        how="left",
    )
    merged = merged.rename(columns={"value": "published"})
    merged["n"] = merged["n"].fillna(0).astype(int)
    merged["difference"] = merged["reproduced_mean"] - merged["published"]
    return merged[OUTPUT_COLUMNS].reset_index(drop=True)


def display(comparison: pd.DataFrame) -> pd.DataFrame:
    """Rounded strings for Markdown/HTML/LaTeX: 'mean ± std' reproduced, signed difference, '–' when missing."""
    out = comparison[[*GROUP_KEYS, "metric", "published"]].copy()
    out["noise_rate"] = [f"{r:g}" for r in out["noise_rate"]]
    out["published"] = [f"{v:.2f}" for v in out["published"]]
    cells = []
    for mean, std, n in zip(comparison["reproduced_mean"], comparison["reproduced_std"], comparison["n"]):
        if pd.isna(mean):
            cells.append("–")
        else:
            cells.append(f"{mean:.2f}" + (f" ± {std:.2f}" if not pd.isna(std) else "") + f" (n={n})")
    out["reproduced"] = cells
    out["difference"] = ["–" if pd.isna(d) else f"{d:+.2f}" for d in comparison["difference"]]
    out["source"] = comparison["source"]
    return out


def to_latex(comparison: pd.DataFrame) -> str:
    """A booktabs table of `display(comparison)` (± as $\\pm$, underscores escaped)."""
    escapes = (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
               ("±", r"$\pm$"), ("–", "--"))

    def tex(value: object) -> str:
        text = str(value)
        for char, repl in escapes:
            text = text.replace(char, repl)
        return text

    shown = display(comparison).map(tex)
    shown.columns = [c.replace("_", r"\_") for c in shown.columns]
    return shown.style.hide(axis="index").to_latex(
        hrules=True,
        caption="Published vs. reproduced (\\%): reproduced is mean $\\pm$ std over runs; difference is reproduced minus published.",
        column_format="l" * (len(shown.columns) - 4) + "rrrl",
        position="t",
        position_float="centering",
    )

