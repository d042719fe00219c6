"""report.html: one self-contained page that shows a sweep at a glance, in any browser, offline.

Every view comes from `Report` (the same frames the other exports write) and every figure from
`plots`; figures are embedded as base64 PNG, so the page needs no network and no sibling files,
and it can be mailed or attached as it is. Print CSS keeps tables and figures whole on paper.
"""

from __future__ import annotations

import base64
import io
import math
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import escape
from matplotlib.figure import Figure

from proselflc.analysis import plots
from proselflc.analysis.importances import cost_sentence
from proselflc.analysis.load import GROUP_KEYS
from proselflc.analysis.report_views import Report
from proselflc.analysis.tables import CERTAINTY_CAPTION, MEMORISATION_CAPTION
from proselflc.io import atomic_write_text

#: Columns of a selected configuration beside its oracle, in reading order, with their headings.
_SELECTED = {
    "noise_kind": "noise",
    "noise_rate": "rate",
    "method": "method",
    "trial_id": "selected trial",
    "status": "status",
    "selected_epoch": "epoch",
    "selected_score": "selection score",
    "test_accuracy": "test acc.",
    "oracle_trial_id": "oracle trial",
    "oracle_epoch": "oracle epoch",
    "oracle_test_accuracy": "oracle test acc.",
    "gap": "gap",
    "final": "final re-runs",
}
_ACCURACIES = ("test_accuracy", "oracle_test_accuracy", "gap", "final_mean", "final_std")
_DPI = 96

#: Autoescaped: every value is HTML-escaped; only the tables and figures built here are marked `safe`.
_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
         max-width: 1200px; margin: 0 auto; padding: 0 1.2rem 3rem; }
  h1 { font-size: 1.6rem; margin: 1.2rem 0 0.2rem; }
  h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
  h3 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
  .meta { color: #555; margin: 0 0 0.8rem; }
  nav { background: #f5f5f5; padding: 0.5rem 0.8rem; border-radius: 4px; }
  nav a { margin-right: 1rem; color: #0645ad; text-decoration: none; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; margin: 0.4rem 0 0.8rem; font-variant-numeric: tabular-nums; }
  caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.3rem; }
  th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; text-align: right; white-space: nowrap; }
  th { background: #f0f0f0; }
  tr:nth-child(even) td { background: #fafafa; }
  figure { margin: 0.6rem 0 1.2rem; }
  figure img { max-width: 100%; height: auto; display: block; }
  figcaption { color: #555; font-size: 0.9rem; }
  .note { color: #555; font-size: 0.92rem; }
  @media print {
    body { max-width: none; font-size: 10pt; padding: 0; }
    nav { display: none; }
    .scroll { overflow: visible; }
    table, figure { break-inside: avoid; }
    h2, h3 { break-after: avoid; }
    a { color: inherit; text-decoration: none; }
  }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{{ meta }}</p>
<nav>{% for id, heading in sections %}<a href="#{{ id }}">{{ heading }}</a>{% endfor %}</nav>

<h2 id="results">Results</h2>
<p class="note">{{ results_caption }}</p>
<div class="scroll">{{ results | safe }}</div>
{{ accuracy_figure | safe }}
<h3 id="memorisation">Memorisation</h3>
<p class="note">{{ memorisation_caption }}</p>
<div class="scroll">{{ memorisation | safe }}</div>
<h3 id="certainty">Selection certainty</h3>
<p class="note">{{ certainty_caption }}</p>
<div class="scroll">{{ certainty | safe }}</div>

<h2 id="selected">Selected configurations and the oracle</h2>
<p class="note">Selection uses <b>{{ select_by }}</b> on the noisy validation split; the oracle is the
search trial and epoch with the best clean test accuracy, shown for contrast only. Gap = oracle minus
selected test accuracy{{ unit }}.</p>
<div class="scroll">{{ selected | safe }}</div>
<h3>Oracle table</h3>
<p class="note">{{ oracle_caption }}</p>
<div class="scroll">{{ oracle | safe }}</div>

<h2 id="curves">Learning and memorisation curves</h2>
<p class="note">Per study: noisy validation vs. clean test accuracy, and on the noisy-label subset the fit to
the noisy labels (<i>noisy_fit</i>, memorisation) vs. agreement with the true labels (<i>noisy_corrected</i>),
beside <i>prediction_changes</i>, the share of training examples whose predicted class changed since the last
epoch: it needs no clean label, and its first smoothed minimum (dotted line) estimates where memorisation starts.
Solid: the selected search trial; dashed: mean of the final-seed re-runs (band: min to max).</p>
{% for figure in study_figures %}{{ figure | safe }}
{% endfor %}
{% if rate_figures %}<h3>Selected trials side by side, per noise rate</h3>
{% for figure in rate_figures %}{{ figure | safe }}
{% endfor %}{% endif %}

<h2 id="importance">Hyperparameter importance</h2>
{% if importance %}<div class="scroll">{{ importance | safe }}</div>
{{ importance_figure | safe }}{% else %}<p class="note">No study had two or more scored trials with varying
hyperparameters and different scores, so fANOVA has nothing to explain.</p>{% endif %}

<h2 id="cost">Search cost</h2>
<p class="note">{{ cost_summary }}</p>
<div class="scroll">{{ cost | safe }}</div>
</body>
</html>
"""
)


def write_page(report: Report, path: str | Path) -> Path:
    """Render `report` as one self-contained HTML page at `path` and return the path."""
    return atomic_write_text(path, render_page(report))


def render_page(report: Report) -> str:
    """The page as a string: tables from the report's frames, figures from `plots` as inline PNGs."""
    best = report.best
    select_by = str(best["select_by"].iloc[0]) if "select_by" in best and len(best) else "val_accuracy"
    sweep = _sweep_name(report)
    percent = report.table.percent
    cost = report.cost
    cost_summary = f"{cost_sentence(cost) or 'No search trial has reported yet.'} Final re-runs: " + (
        f"{int(cost['final_runs'].sum())} runs, {float(cost['final_epochs'].sum()):g} epochs."
    )
    rate_figures = [_figure(fig, f"Selected trials at {stem.removeprefix('curves_')}") for stem, fig in
                    plots.learning_curves(report.dynamics, best)]
    bars = plots.importance_bars(report.importance)
    n_trials = len(report.trials.drop_duplicates(["study", "phase", "trial_id"])) if len(report.trials) else 0
    return _TEMPLATE.render(
        title=f"Sweep {sweep}",
        meta=(
            f"{best['study'].nunique() if 'study' in best else 0} studies, {n_trials} trials; "
            f"selected on {select_by}; written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by proselflc report"
        ),
        sections=[
            ("results", "Results"),
            ("memorisation", "Memorisation"),
            ("certainty", "Certainty"),
            ("selected", "Selected vs. oracle"),
            ("curves", "Curves"),
            ("importance", "Importance"),
            ("cost", "Search cost"),
        ],
        select_by=select_by,
        unit=" (percentage points)" if percent else "",
        results_caption=report.table.caption(),
        results=report.table.html_styler().to_html(),
        accuracy_figure=_figure(plots.accuracy_vs_noise(report.table), "Test accuracy vs. noise rate (mean ± std)."),
        memorisation_caption=MEMORISATION_CAPTION,
        memorisation=report.memorisation.to_html(),
        certainty_caption=CERTAINTY_CAPTION,
        certainty=report.certainty.to_html(),
        selected=_selected_table(best, percent),
        oracle_caption=report.oracle.caption(),
        oracle=report.oracle.html_styler().to_html(),
        study_figures=[_figure(fig, f"Study {study}") for study, fig in _in_table_order(
            plots.study_curves(report.dynamics), best)],
        rate_figures=rate_figures,
        importance=_importance_table(report.importance),
        importance_figure=_figure(bars, "fANOVA importance of each varying hyperparameter, per study.")
        if bars is not None
        else "",
        cost_summary=cost_summary,
        cost=_table(cost.assign(saved=cost["saved"].map(_percent_text)), "Per study: epochs trained by the search "
                    "vs. the same trials at full length, and the final re-runs on top."),
    )


def _selected_table(best: pd.DataFrame, percent: bool) -> str:
    """One row per study: the selected trial, its test accuracy, the oracle beside it, then its hyperparameters."""
    if best.empty:
        return "<p class='note'>No study has a selected configuration yet.</p>"
    frame = best.copy()
    scale = 100.0 if percent else 1.0
    for col in _ACCURACIES:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce") * scale
    if "final_mean" in frame:
        frame["final"] = [
            "" if pd.isna(m) else f"{m:.2f}" + ("" if pd.isna(s) else f" ± {s:.2f}") + f" (n={int(n)})"
            for m, s, n in zip(frame["final_mean"], frame["final_std"], frame["final_n"].fillna(0))
        ]
    columns = [c for c in _SELECTED if c in frame]
    params = [c for c in frame.columns if "." in c and frame[c].notna().any()]
    shown = frame[columns + params].rename(columns=_SELECTED)
    return _table(shown, "The configuration each study selected, its clean test accuracy"
                  + (" (%)" if percent else "") + ", and the oracle beside it.")


def _importance_table(imp: pd.DataFrame) -> str:
    """Importances as one row per study and one column per hyperparameter ('' where not scored)."""
    if imp.empty:
        return ""
    keys = [k for k in GROUP_KEYS if imp[k].nunique() > 1] or ["method"]
    wide = imp.pivot_table(index=keys, columns="param", values="importance", sort=False)
    n = imp.groupby(keys, sort=False)["n_trials"].first()
    wide.insert(0, "trials", n.reindex(wide.index))
    return _table(wide.reset_index(), "fANOVA importance (sums to 1 per study) of the hyperparameters that varied.")


def _table(frame: pd.DataFrame, caption: str) -> str:
    """A frame as an HTML table with readable numbers (4 significant digits) and a caption."""
    html = frame.to_html(index=False, na_rep="", float_format=_number, border=0, classes="frame")
    return html.replace("<thead>", f"<caption>{escape(caption)}</caption>\n  <thead>", 1)


def _figure(fig: Figure, caption: str) -> str:
    """`fig` as an <img> holding a base64 PNG, with its caption."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    alt = escape(caption)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'


def _in_table_order(figures: list[tuple[str, Figure]], best: pd.DataFrame) -> list[tuple[str, Figure]]:
    """Study figures in the order of the selected-configurations table (noise rate, then method)."""
    order = {study: i for i, study in enumerate(best["study"])} if "study" in best else {}
    return sorted(figures, key=lambda pair: order.get(pair[0], len(order)))


def _sweep_name(report: Report) -> str:
    for frame in (report.dynamics, report.trials):
        if "sweep" in frame and len(frame):
            return str(frame["sweep"].iloc[0])
    return "sweep"


def _number(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.4g}"


def _percent_text(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.0%}"
