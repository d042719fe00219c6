"""Selection vs. oracle on a hand-built DataFrame with a known answer; tables, exports, importance, cost."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.importance import MeanDecreaseImpurityImportanceEvaluator

from proselflc.analysis import (
    best_configs,
    importance,
    load_sweep,
    results_table,
    search_cost,
    study_from_trials,
    write_report,
)
from proselflc.analysis.plots import accuracy_vs_noise, importance_bars, learning_curves
from test_analysis_sweeps import small_sweep

KEYS = {"sweep": "hand", "dataset": "digits", "model": "mlp", "noise_kind": "symmetric"}


def _rows(
    rate: float,
    method: str,
    phase: str,
    trial: str,
    status: str,
    seed: int,
    val: list[float],
    test: list[float],
    **params: object,
) -> list[dict[str, object]]:
    return [
        {
            **KEYS,
            "study": f"symmetric-{rate:g}/{method}",
            "noise_rate": rate,
            "method": method,
            "phase": phase,
            "trial_id": trial,
            "status": status,
            "max_epochs": 3,
            "seed": seed,
            "epoch": e + 1,
            "val_accuracy": v,
            "test_accuracy": t,
            "noisy_fit": 0.1 * (e + 1),
            "noisy_corrected": 0.2 * (e + 1),
            "train.seed": seed,
            **params,
        }
        for e, (v, t) in enumerate(zip(val, test))
    ]


@pytest.fixture
def hand() -> pd.DataFrame:
    """A sweep as a DataFrame with known answers (every trial has max_epochs 3); see the tests below."""
    lr = "optim.lr"
    rows = [
        *_rows(0.4, "ce", "search", "t1", "completed", 0, [0.5, 0.7, 0.6], [0.6, 0.65, 0.8], **{lr: 0.1}),
        *_rows(0.4, "ce", "search", "t2", "stopped", 0, [0.55, 0.68], [0.9, 0.7], **{lr: 0.01}),
        *_rows(0.4, "ce", "search", "t5", "completed", 0, [0.4, 0.5, 0.55], [0.7, 0.8, 0.85], **{lr: 0.05}),
        *_rows(0.4, "ce", "final", "f1", "completed", 1, [0.5] * 3, [0.5, 0.6, 0.70], **{lr: 0.1}),
        *_rows(0.4, "ce", "final", "f2", "completed", 2, [0.5] * 3, [0.5, 0.6, 0.74], **{lr: 0.1}),
        *_rows(0.4, "ce", "final", "f3", "completed", 3, [0.5] * 3, [0.5, 0.6, 0.72], **{lr: 0.1}),
        *_rows(0.4, "ce", "final", "f4", "errored", 4, [0.5], [0.1], **{lr: 0.1}),
        *_rows(0.4, "pro", "search", "t1", "completed", 0, [0.5, 0.6, 0.4], [0.7, 0.75, 0.8], **{lr: 0.1}),
        *_rows(0.4, "pro", "search", "t2", "completed", 0, [0.6, 0.5, 0.5], [0.66, 0.7, 0.7], **{lr: 0.2}),
        *_rows(0.2, "ce", "search", "t3", "completed", 0, [0.8, 0.7, 0.7], [0.85, 0.8, 0.8], **{lr: 0.3}),
        *_rows(0.2, "ce", "search", "t2", "completed", 0, [0.8, 0.7, 0.7], [0.83, 0.8, 0.8], **{lr: 0.2}),
        *_rows(0.2, "pro", "search", "t1", "completed", 0, [0.7, 0.9, np.nan], [0.8, 0.88, 0.1], **{lr: 0.1}),
        *_rows(0.2, "pro", "search", "t2", "diverged", 0, [0.95, 0.96, 0.1], [0.9, 0.91, 0.1], **{lr: 0.9}),
        *_rows(0.2, "pro", "search", "t3", "stopped", 0, [0.5, 0.6], [0.7, 0.88], **{lr: 0.05}),
    ]
    return pd.DataFrame(rows)


def _get(best: pd.DataFrame, rate: float, method: str) -> pd.Series:
    return best[(best["noise_rate"] == rate) & (best["method"] == method)].iloc[0]


def test_default_selection_scores_full_length_trials_at_their_last_epoch(hand: pd.DataFrame) -> None:
    ce = _get(best_configs(hand), 0.4, "ce")
    assert (ce["trial_id"], ce["selected_epoch"], ce["selected_score"]) == ("t1", 3, 0.6)
    assert ce["test_accuracy"] == 0.8 and ce["test_accuracy_end"] == 0.8
    assert (ce["oracle_trial_id"], ce["oracle_epoch"], ce["oracle_test_accuracy"]) == ("t5", 3, 0.85)
    assert ce["gap"] == pytest.approx(0.05)
    assert ce["optim.lr"] == 0.1 and ce["scope"] == "last"
    assert (ce["n_trials"], ce["n_completed"], ce["n_stopped"]) == (3, 2, 1)


def test_scope_all_selects_the_best_epoch_of_any_trial(hand: pd.DataFrame) -> None:
    ce = _get(best_configs(hand, scope="all"), 0.4, "ce")
    assert (ce["trial_id"], ce["selected_epoch"], ce["selected_score"]) == ("t1", 2, 0.7)
    assert ce["test_accuracy"] == 0.65 and ce["test_accuracy_end"] == 0.8
    assert ce["noisy_fit"] == pytest.approx(0.2) and ce["noisy_corrected_end"] == pytest.approx(0.6)
    assert (ce["oracle_trial_id"], ce["oracle_epoch"], ce["oracle_test_accuracy"]) == ("t2", 1, 0.9)
    assert ce["gap"] == pytest.approx(0.25)


def test_final_seed_reruns_give_mean_std_and_n(hand: pd.DataFrame) -> None:
    ce = _get(best_configs(hand), 0.4, "ce")
    assert ce["final_n"] == 3 and ce["final_unfinished"] == 1
    assert ce["final_mean"] == pytest.approx(0.72) and ce["final_std"] == pytest.approx(0.02)
    assert ce["final_seeds"] == "1,2,3" and ce["final_matches_selection"]
    assert _get(best_configs(hand), 0.4, "pro")["final_n"] == 0


def test_ties_go_to_the_earlier_epoch_then_the_smaller_trial_id(hand: pd.DataFrame) -> None:
    last, every = best_configs(hand), best_configs(hand, scope="all")
    assert (_get(last, 0.4, "pro")["trial_id"], _get(last, 0.4, "pro")["selected_epoch"]) == ("t2", 3)
    assert (_get(every, 0.4, "pro")["trial_id"], _get(every, 0.4, "pro")["selected_epoch"]) == ("t2", 1)
    assert _get(last, 0.2, "ce")["trial_id"] == "t2" and _get(last, 0.2, "ce")["oracle_trial_id"] == "t2"
    assert _get(every, 0.2, "ce")["trial_id"] == "t2" and _get(every, 0.2, "ce")["oracle_trial_id"] == "t3"


def test_diverged_and_nan_trials_give_way_to_a_stopped_one(hand: pd.DataFrame) -> None:
    pro = _get(best_configs(hand), 0.2, "pro")
    assert (pro["trial_id"], pro["selected_epoch"], pro["test_accuracy"]) == ("t3", 2, 0.88)
    assert (pro["n_completed"], pro["n_diverged"], pro["n_stopped"]) == (1, 1, 1)
    every = _get(best_configs(hand, scope="all"), 0.2, "pro")
    assert (every["trial_id"], every["selected_epoch"]) == ("t2", 2)
    no_diverged = _get(best_configs(hand[hand["trial_id"] != "t2"], scope="all"), 0.2, "pro")
    assert (no_diverged["trial_id"], no_diverged["selected_epoch"]) == ("t1", 2)


def test_minimising_a_validation_loss_is_allowed(hand: pd.DataFrame) -> None:
    hand = hand.assign(val_loss=1.0 - hand["val_accuracy"])
    assert (
        _get(best_configs(hand, select_by="val_loss", mode="min", scope="all"), 0.4, "ce")["selected_epoch"]
        == 2
    )


@pytest.mark.parametrize("metric", ["test_accuracy", "test_loss", "clean_fit", "noisy_corrected"])
def test_selection_on_clean_labels_is_refused(hand: pd.DataFrame, metric: str) -> None:
    with pytest.raises(ValueError, match="clean labels.*val_accuracy"):
        best_configs(hand, select_by=metric)


def test_unknown_selection_metric_suggests_the_closest(hand: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'val_acuracy' is not a metric.*did you mean 'val_accuracy'"):
        best_configs(hand, select_by="val_acuracy")
    with pytest.raises(ValueError, match="mode='best'; valid: max, min"):
        best_configs(hand, mode="best")
    with pytest.raises(ValueError, match="scope='first'; valid: last, all"):
        best_configs(hand, scope="first")


def test_results_table_cells_and_row_best(hand: pd.DataFrame) -> None:
    table = results_table(best_configs(hand))
    assert table.percent
    assert list(table.mean.index) == [0.2, 0.4] and list(table.mean.columns) == ["ce", "pro"]
    cells = table.cells(bold=("**", "**"))
    assert cells.loc[0.4, "ce"] == "**72.00 ± 2.00**"
    assert cells.loc[0.4, "pro"] == "70.00"
    assert cells.loc[0.2, "pro"] == "**88.00**" and cells.loc[0.2, "ce"] == "80.00"
    assert table.n.loc[0.4, "ce"] == 3 and table.n.loc[0.4, "pro"] == 1


def test_results_table_sources(hand: pd.DataFrame) -> None:
    best = best_configs(hand, scope="all")
    assert results_table(best, source="selected").mean.loc[0.4, "ce"] == 0.65
    assert results_table(best, source="selected_end").mean.loc[0.4, "ce"] == 0.8
    assert results_table(best, source="oracle").mean.loc[0.4, "ce"] == 0.9
    assert np.isnan(results_table(best, source="final").mean.loc[0.2, "ce"])
    with pytest.raises(ValueError, match="source='test'; valid: auto, final"):
        results_table(best, source="test")


def test_markdown_and_csv_round_trip(hand: pd.DataFrame, tmp_path: Path) -> None:
    table = results_table(best_configs(hand))
    lines = table.to_markdown().splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["noise rate", "ce", "pro"]
    assert len(lines) == 4 and "**72.00 ± 2.00**" in lines[3]
    back = pd.read_csv(table.to_csv(tmp_path / "t.csv"), header=[0, 1], index_col=0)
    pd.testing.assert_frame_equal(back, table.numeric(), check_names=False, check_dtype=False)


def test_latex_is_a_well_formed_booktabs_table(hand: pd.DataFrame) -> None:
    tex = results_table(best_configs(hand).assign(method=lambda d: d["method"] + "_x")).to_latex()
    for token in (
        r"\begin{table}",
        r"\begin{tabular}{lcc}",
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ):
        assert tex.count(token) == 1, token
    body = tex[tex.index(r"\toprule") + len(r"\toprule") : tex.index(r"\bottomrule")].replace(r"\midrule", "")
    rows = [r for r in body.split(r"\\") if r.strip()]
    assert len(rows) == 3 and all(r.count("&") == 2 for r in rows)
    assert "ce\\_x" in tex and "72.00 $\\pm$ 2.00" in tex and "\\bfseries 88.00" in tex
    assert tex.count("{") == tex.count("}")
    assert not re.search(r"(?<!\\)[_%#]", tex.replace("$\\pm$", ""))


class _Cells(HTMLParser):
    """Text of every <th>/<td> of an HTML table, with the ids of the cells the <style> block bolds."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self.headers: list[str] = []
        self._open: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("td", "th"):
            self._open = (tag, dict(attrs).get("id") or "")

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            tag, cell_id = self._open
            (
                self.headers.append(data.strip())
                if tag == "th"
                else self.cells.__setitem__(cell_id, data.strip())
            )

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def test_html_marks_the_row_best_bold(hand: pd.DataFrame) -> None:
    html = results_table(best_configs(hand)).to_html()
    parser = _Cells()
    parser.feed(html)
    assert parser.headers == ["noise rate", "ce", "pro"]
    by_pos = {re.sub(r"^T_\w+?_", "", k): v for k, v in parser.cells.items()}
    assert by_pos["row1_col1"] == "72.00 ± 2.00" and by_pos["row0_col2"] == "88.00"
    style = html[html.index("<style") : html.index("</style>")]
    assert "font-weight: bold" in style
    assert sorted(re.findall(r"#T_\w+?_(row\d+_col\d+)", style)) == ["row0_col2", "row1_col1"]


def test_importance_from_an_in_memory_optuna_study(sweep_dir_small: Path) -> None:
    df = load_sweep(sweep_dir_small)
    imp = importance(df)
    pro = imp[(imp["noise_rate"] == 0.2) & (imp["method"] == "proselflc")]
    assert set(pro["param"]) == {"optim.lr", "loss.exp_base", "loss.trust_mode"}
    assert pro["importance"].sum() == pytest.approx(1.0)
    assert (pro["n_trials"] == 2).all()  # the errored trial is a FAIL, not scored
    group = df[(df["study"] == "symmetric-0.2/proselflc") & (df["phase"] == "search")]
    study = study_from_trials(group, "val_accuracy", space=df.attrs["search_spaces"]["proselflc"])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert study.best_trial.params == {"optim.lr": 0.1, "loss.exp_base": 8.0, "loss.trust_mode": "global"}
    dists = study.trials[0].distributions
    assert dists["optim.lr"] == FloatDistribution(0.01, 0.5, log=True)
    assert dists["loss.trust_mode"] == CategoricalDistribution(["global", "entropy", "max_p"])
    mdi = importance(df, evaluator=MeanDecreaseImpurityImportanceEvaluator(seed=0))
    assert set(mdi["param"]) == set(imp["param"])


def test_ranges_are_inferred_where_the_recorded_space_does_not_hold_the_values(sweep_dir_small: Path) -> None:
    df = load_sweep(sweep_dir_small)
    group = df[(df["study"] == "symmetric-0.2/proselflc") & (df["phase"] == "search")]
    narrow = {"optim.lr": {"type": "uniform", "low": 0.2, "high": 0.4}, "loss.exp_base": {"type": "grid"}}
    dists = study_from_trials(group, "val_accuracy", space=narrow).trials[0].distributions
    assert dists["optim.lr"] == FloatDistribution(0.05, 0.3)
    assert dists["loss.exp_base"] == FloatDistribution(4.0, 16.0)
    assert dists["loss.trust_mode"] == CategoricalDistribution(["entropy", "global", "max_p"])


def test_search_cost_counts_epochs_trained_against_no_early_stopping(sweep_dir_small: Path) -> None:
    cost = search_cost(load_sweep(sweep_dir_small)).set_index(["noise_rate", "method"])
    ce = cost.loc[(0.2, "crossentropy")]
    assert (ce["n_trials"], ce["epochs_trained"], ce["epochs_full"]) == (2, 6, 8)
    assert ce["saved"] == pytest.approx(0.25)
    assert (ce["final_runs"], ce["final_epochs"]) == (2, 8)
    assert cost.loc[(0.2, "proselflc"), "epochs_trained"] == 9


def test_plots_render_headless(sweep_dir_small: Path, tmp_path: Path) -> None:
    df = load_sweep(sweep_dir_small)
    best = best_configs(df)
    fig = accuracy_vs_noise(results_table(best))
    assert len(fig.axes[0].lines) >= 2
    curves = learning_curves(df, best)
    assert [stem for stem, _ in curves] == [
        "curves_digits_mlp_symmetric-0.2",
        "curves_digits_mlp_symmetric-0.4",
    ]
    assert [ax.get_title() for ax in curves[0][1].axes] == [
        "test_accuracy",
        "noisy_fit",
        "noisy_corrected",
        "mean_epsilon",
    ]
    assert importance_bars(importance(df)) is not None
    assert importance_bars(importance(df).iloc[0:0]) is None


def test_write_report_exports_every_format(sweep_dir_small: Path, tmp_path: Path) -> None:
    report = write_report(sweep_dir_small, tmp_path / "out", figures=False)
    names = {p.name for p in report.files}
    assert {
        "results.md",
        "results.csv",
        "results.tex",
        "results.xlsx",
        "results.html",
        "best_configs.csv",
        "importance.csv",
        "dynamics.csv",
        "memorisation.csv",
        "memorisation.tex",
        "certainty.csv",
        "certainty.tex",
    } <= names
    assert all(p.stat().st_size > 0 for p in report.files)
    sheets = pd.read_excel(tmp_path / "out" / "results.xlsx", sheet_name=None)
    assert list(sheets) == [
        "results",
        "results_numeric",
        "oracle",
        "best_configs",
        "memorisation",
        "certainty",
        "importance",
        "search_cost",
        "trials",
        "dynamics",
        "robust_across_rates",
    ]
    numeric = sheets["results_numeric"]
    pd.testing.assert_frame_equal(numeric, report.table.long(), check_dtype=False)
    best_back = pd.read_csv(tmp_path / "out" / "best_configs.csv")
    assert best_back["trial_id"].tolist() == report.best["trial_id"].tolist()
    assert np.allclose(best_back["test_accuracy"], report.best["test_accuracy"])
    dyn = sheets["dynamics"]
    assert set(dyn["phase"]) == {"search", "final"} and len(dyn) == len(report.dynamics)
    from openpyxl import load_workbook

    ws = load_workbook(tmp_path / "out" / "results.xlsx")["results"]
    bold = {c.value for row in ws.iter_rows() for c in row if c.font is not None and c.font.b and c.row > 1}
    assert "87.00 ± 1.41" in bold
    assert write_report(sweep_dir_small, tmp_path / "md", formats=["md"], figures=False).files == [
        tmp_path / "md" / "results.md"
    ]
    with pytest.raises(ValueError, match="unknown report format 'pdf'; valid: csv, html, md, tex, xlsx"):
        write_report(sweep_dir_small, tmp_path / "x", formats=["pdf"])


@pytest.fixture
def sweep_dir_small(tmp_path: Path) -> Path:
    return small_sweep(tmp_path)


def test_trials_that_diverged_are_not_counted_as_saved_by_early_stopping() -> None:
    """A sweep whose trials all diverged at epoch 1 of 4 trained 25% of its budget; the scheduler saved nothing."""
    from proselflc.analysis.importances import cost_sentence, search_cost

    rows = [
        {"study": "symmetric-0.4/ce", "dataset": "digits", "model": "mlp", "noise_kind": "symmetric",
         "noise_rate": 0.4, "method": "ce", "phase": "search", "trial_id": f"t{i}", "epoch": 1, "max_epochs": 4,
         "status": status}
        for i, status in enumerate(["diverged", "diverged", "errored", "stopped"])
    ]
    cost = search_cost(pd.DataFrame(rows))
    assert cost["epochs_saved"].tolist() == [3.0] and cost["saved"].tolist() == [0.1875]
    assert cost_sentence(cost) == (
        "Search cost: 4 of 16 epochs trained (19% saved by early stopping; 56% not run: trials diverged or errored)."
    )
