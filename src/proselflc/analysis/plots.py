"""Figures for a sweep: accuracy vs. noise rate, learning and memorisation curves, importances.

Figures are built with matplotlib's object API (no pyplot), so they render with Agg in a headless
process without touching the global backend, and a notebook shows them with `display(fig)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from proselflc.analysis.load import GROUP_KEYS
from proselflc.analysis.tables import ResultsTable
from proselflc.io import atomic_write, safe_name
from proselflc.memorisation import onset_of

CURVE_METRICS = ("test_accuracy", "noisy_fit", "noisy_corrected", "prediction_changes", "mean_epsilon")
#: Per-study panels: learning (noisy validation vs. clean test) and memorisation of the noisy subset, with the
#: memorisation signal that needs no clean labels (prediction_changes) beside it.
STUDY_METRICS = (("val_accuracy", "test_accuracy"), ("noisy_fit", "noisy_corrected", "prediction_changes"))
PANEL = ["dataset", "model", "noise_kind"]


def accuracy_vs_noise(table: ResultsTable) -> Figure:
    """Test accuracy (mean ± std) vs. noise rate: a line per method, a panel per dataset/model/kind."""
    mean, std = table.mean, table.std
    panels = _panels(mean.index)
    fig = Figure(figsize=(4.5 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    scale = 100.0 if table.percent else 1.0
    for ax, (title, rows) in zip(axes, panels):
        for method in mean.columns:
            m = mean.loc[rows, method]
            rates = m.index.get_level_values("noise_rate").to_numpy(dtype=float)
            y = m.to_numpy(dtype=float) * scale
            err = np.nan_to_num(std.loc[rows, method].to_numpy(dtype=float) * scale)
            if np.isfinite(y).any():
                ax.errorbar(rates, y, yerr=err, marker="o", capsize=3, label=str(method))
        ax.set(title=title, xlabel="noise rate", ylabel="test accuracy" + (" (%)" if table.percent else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig


def learning_curves(
    df: pd.DataFrame, best: pd.DataFrame, metrics: Sequence[str] = CURVE_METRICS
) -> list[tuple[str, Figure]]:
    """Per (dataset, model, kind, rate): the selected search trials' curves, one line per method.

    Returns (file stem, figure) pairs; metrics a sweep does not report are left out.
    """
    present = [m for m in metrics if _reported(df, m)]
    chosen = best.dropna(subset=["trial_id"]) if "trial_id" in best else best.iloc[0:0]
    figures = []
    row_keys = [k for k in GROUP_KEYS if k != "method"]
    for key, group in chosen.groupby(row_keys, sort=False):
        fig = Figure(figsize=(3.4 * max(len(present), 1), 3.2), layout="constrained")
        axes = fig.subplots(1, max(len(present), 1), squeeze=False)[0]
        for _, sel in group.iterrows():
            rows = df[
                (df["study"] == sel["study"])
                & (df["phase"] == "search")
                & (df["trial_id"] == sel["trial_id"])
            ]
            rows = rows.dropna(subset=["epoch"]).sort_values("epoch")
            for ax, metric in zip(axes, present):
                ax.plot(rows["epoch"], rows[metric], label=str(sel["method"]))
        for ax, metric in zip(axes, present):
            ax.set(title=metric, xlabel="epoch")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize="small")
        labels = dict(zip(row_keys, key))
        fig.suptitle(
            f"{labels['dataset']} / {labels['model']} / {labels['noise_kind']} {labels['noise_rate']:g}"
        )
        figures.append(
            (
                f"curves_{labels['dataset']}_{labels['model']}_{labels['noise_kind']}-{labels['noise_rate']:g}",
                fig,
            )
        )
    return figures


def study_curves(dynamics: pd.DataFrame) -> list[tuple[str, Figure]]:
    """Per study: learning (noisy val vs. clean test accuracy) and memorisation (noisy_fit vs. noisy_corrected).

    Solid lines follow the selected search trial; dashed lines the mean of the final-seed re-runs,
    with their min-max band; a dotted vertical line marks the selected trial's estimated memorisation onset (the
    first smoothed minimum of prediction_changes). Takes `Report.dynamics`; returns (study key, figure) pairs.
    """
    panels = [
        ("learning", [m for m in STUDY_METRICS[0] if _reported(dynamics, m)]),
        ("memorisation of noisy labels", [m for m in STUDY_METRICS[1] if _reported(dynamics, m)]),
    ]
    panels = [(title, metrics) for title, metrics in panels if metrics]
    figures = []
    for study, rows in dynamics.dropna(subset=["epoch"]).groupby("study", sort=False):
        fig = Figure(figsize=(4.2 * max(len(panels), 1), 3.0), layout="constrained")
        axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
        search = rows[rows["phase"] == "search"].sort_values("epoch")
        final = rows[rows["phase"] == "final"].groupby("epoch")
        onset = onset_of(search.to_dict("records")) if "prediction_changes" in search else None
        for ax, (title, metrics) in zip(axes, panels):
            if onset is not None and title.startswith("memorisation"):
                ax.axvline(onset, color="grey", linestyle=":", label=f"onset (epoch {onset})")
            for i, metric in enumerate(metrics):
                color = f"C{i}"
                if search[metric].notna().any():
                    ax.plot(search["epoch"], search[metric], color=color, label=f"{metric} (selected)")
                if len(final) and rows.loc[rows["phase"] == "final", metric].notna().any():
                    stats = final[metric].agg(["mean", "min", "max"])
                    ax.plot(stats.index, stats["mean"], color=color, linestyle="--", label=f"{metric} (final mean)")
                    ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.15)
            ax.set(title=title, xlabel="epoch", ylim=(0, 1))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="x-small")
            else:  # e.g. noisy_fit at noise rate 0: there is no noisy subset to measure
                ax.text(0.5, 0.5, "not measured in this study", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(str(study))
        figures.append((str(study), fig))
    return figures


def importance_bars(imp: pd.DataFrame) -> Figure | None:
    """Horizontal fANOVA importance bars, one panel per (noise rate, method); None when nothing was scored."""
    if imp.empty:
        return None
    studies = list(imp.groupby(GROUP_KEYS, sort=False))
    cols = min(len(studies), 4)
    nrows = -(-len(studies) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.4 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, (key, group) in zip(axes, studies):
        labels = dict(zip(GROUP_KEYS, key))
        ordered = group.sort_values("importance")
        ax.barh(ordered["param"], ordered["importance"])
        ax.set(title=f"{labels['noise_kind']} {labels['noise_rate']:g} / {labels['method']}", xlim=(0, 1))
        ax.tick_params(axis="y", labelsize="small")
    for ax in axes[len(studies) :]:
        ax.set_visible(False)
    fig.suptitle("hyperparameter importance (fANOVA)")
    return fig


def save(fig: Figure, out: str | Path, stem: str) -> list[Path]:
    """Write `fig` as <out>/<stem>.png and .pdf and return both paths.

    `stem` may hold a sweep's values (a study's dataset name): it is made one plain file name, so a
    name holding '/' or '..' cannot put a figure outside `out`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = safe_name(stem)
    return [
        atomic_write(out / f"{stem}.{fmt}", lambda fh, fmt=fmt: fig.savefig(fh, format=fmt, dpi=150), root=out)
        for fmt in ("png", "pdf")
    ]


def _reported(df: pd.DataFrame, metric: str) -> bool:
    return metric in df.columns and df[metric].notna().any()


def _panels(index: pd.Index) -> list[tuple[str, list]]:
    """Group table rows by everything but the noise rate: one panel each."""
    names = [n for n in index.names if n != "noise_rate"]
    if not names:
        return [("", list(index))]
    frame = index.to_frame(index=False)
    out = []
    for key, part in frame.groupby(names, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((" / ".join(str(k) for k in key), [index[i] for i in part.index]))
    return out
