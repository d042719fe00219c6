"""Figures for a sweep: accuracy vs. noise rate, learning curves of the selected trials, importances.

Figures are built with matplotlib's object API (no pyplot), so they render with Agg in a headless
process without touching the global backend, and a notebook shows them with `display(fig)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from proselflc.analysis.load import GROUP_KEYS
from proselflc.analysis.tables import ResultsTable

CURVE_METRICS = ("test_accuracy", "noisy_fit", "noisy_corrected", "mean_epsilon")
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
    present = [m for m in metrics if m in df.columns and df[m].notna().any()]
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
    """Write `fig` as <out>/<stem>.png and .pdf and return both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


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
