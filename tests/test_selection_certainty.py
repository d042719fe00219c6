"""Selection certainty: the paired bootstrap against hand counts, its calibration on a synthetic case with a known
answer, the noise maths, the too-small-split warning, and the certainty a real tiny sweep carries end to end."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proselflc import selection_certainty as sc


def _exact_bootstrap(a: np.ndarray, b: np.ndarray) -> float:
    """Every one of the n^n ordered resamples of n examples, counted: P(a right on more) + P(tie) / 2."""
    n = len(a)
    wins = ties = 0
    for draw in itertools.product(range(n), repeat=n):
        d = int(a[list(draw)].sum()) - int(b[list(draw)].sum())
        wins += d > 0
        ties += d == 0
    return (wins + 0.5 * ties) / n**n


def test_the_multinomial_bootstrap_matches_every_resample_counted_by_hand() -> None:
    a = np.array([1, 1, 1, 0, 0, 1], dtype=bool)
    b = np.array([0, 1, 0, 1, 0, 1], dtype=bool)
    exact = _exact_bootstrap(a, b)  # 6^6 = 46,656 resamples
    resamples = 200_000
    estimate = sc.paired_bootstrap(a, b, resamples=resamples, seed=1)
    monte_carlo_se = (exact * (1 - exact) / resamples) ** 0.5
    assert abs(estimate - exact) < 4 * monte_carlo_se + 1e-3
    assert 0.6 < exact < 0.9


def test_closed_form_when_only_the_chosen_is_ever_right_alone() -> None:
    # 3 of 20 examples only the chosen gets right, none only the runner-up: it loses no resample and ties one
    # only when none of those 3 is drawn, with probability (17/20)^20.
    a = np.zeros(20, dtype=bool)
    a[:3] = True
    p = sc.paired_bootstrap(a, np.zeros(20, dtype=bool), resamples=200_000, seed=2)
    assert p == pytest.approx(1 - 0.5 * (17 / 20) ** 20, abs=0.003)
    assert sc.paired_bootstrap(a, a) == 0.5  # identical predictions: every resample a tie


def test_calibrated_on_a_synthetic_case_with_a_known_answer() -> None:
    """Two configs, the better one known: the difference in the share of examples each alone gets right is drawn
    from a flat prior, so the bootstrap's P approximates the posterior probability that the val-better one is
    truly better. Of the selections reported more than 90% sure, the val-better config is truly better about
    as often as claimed, and at least 90% of the time."""
    rng = np.random.default_rng(0)
    n, outcomes = 200, []
    for _ in range(600):
        delta = rng.uniform(-0.1, 0.1)  # true P(only a right) - P(only b right)
        only_a, only_b = 0.1 + delta / 2, 0.1 - delta / 2
        draw = rng.choice(3, size=n, p=[only_a, only_b, 1 - only_a - only_b])
        a, b = draw == 0, draw == 1
        chosen_is_a = a.sum() >= b.sum()
        p = sc.paired_bootstrap(a, b, resamples=2000) if chosen_is_a else sc.paired_bootstrap(b, a, resamples=2000)
        outcomes.append((p, (delta > 0) == chosen_is_a))
    sure = [truly for p, truly in outcomes if p > 0.9]
    claimed = np.mean([p for p, _ in outcomes if p > 0.9])
    assert len(sure) > 100
    assert np.mean(sure) >= 0.9 and abs(np.mean(sure) - claimed) < 0.06
    unsure = [truly for p, truly in outcomes if p < 0.7]
    assert np.mean(unsure) < 0.8  # a low certainty is honest too: these are close to coin tosses


def test_kappa_and_effective_size_follow_the_transition_matrix() -> None:
    assert sc.noise_kappa("symmetric", 0.8, 10) == pytest.approx(1 - 0.8 * 10 / 9)  # 0.11 on digits at 80%
    assert sc.noise_kappa("symmetric", 0.4, 10, allow_true_label=True) == pytest.approx(0.6)
    assert sc.noise_kappa("pairflip", 0.45, 10) == pytest.approx(1 - 0.45 * 10 / 9)
    assert sc.noise_kappa("matrix", 0.0, 3, matrix=np.eye(3).tolist()) == pytest.approx(1.0)
    t = sc.transition_matrix("cifar100_superclass", 0.4, 100)
    assert t is not None and np.allclose(t.sum(axis=1), 1)
    assert sc.kappa(t) == pytest.approx((100 - 40 * 0.4) / 100 - 40 * 0.4 / 9900)
    assert sc.noise_kappa("symmetric", 0.4, 10, labels_are_noisy=True) is None
    assert sc.noise_kappa("someone_elses_kind", 0.4, 10) is None
    assert sc.effective_size(202, 1 - 0.8 * 10 / 9) == pytest.approx(202 / 81)
    assert sc.required_size(1.0) == pytest.approx(4000)  # 2^2 x 0.1 / 0.01^2
    assert sc.required_size(0.0) == float("inf")


def test_stored_correctness_round_trips_and_missing_pieces_say_why() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(203) < 0.7, rng.random(203) < 0.5
    text_a = sc.encode_correct(a, epoch=5, split="s1", kappa_=0.5)
    assert len(text_a) < 200 and np.array_equal(sc.decode_correct(text_a).correct, a)
    text_b = sc.encode_correct(b, epoch=5, split="s1", kappa_=0.5)
    found = sc.certainty(text_a, text_b, runner_up_name="t2")
    assert found.p_beats_runner_up == pytest.approx(sc.paired_bootstrap(a, b)) and found.p_beats_runner_up > 0.99
    assert (found.n_val, found.n_eff, found.reason) == (203, pytest.approx(203 * 0.25), "")
    assert "P(beats runner-up) 1.00, n_eff 51 of 203" in found.describe()
    other_split = sc.encode_correct(b, epoch=5, split="s2", kappa_=0.5)
    cases = {
        "no runner-up": sc.certainty(text_a, None, runner_up_name=None),
        "kept no per-example": sc.certainty(text_a, None, runner_up_name="t2"),
        "different validation splits": sc.certainty(text_a, other_split, runner_up_name="t2"),
        "unreadable": sc.certainty(text_a, "{not json", runner_up_name="t2"),
        "last epoch": sc.certainty(text_a, text_b, runner_up_name="t2", chosen_epoch=3),
    }
    for why, result in cases.items():
        assert result.p_beats_runner_up is None and why in result.reason and "n/a" in result.describe()


def test_reseeding_the_tied_configs_spends_runs_only_when_noisy_val_cannot_decide() -> None:
    rng = np.random.default_rng(4)
    decided = [rng.random(400) < 0.9, rng.random(400) < 0.5, rng.random(400) < 0.5]
    assert sc.reseed_tied_choice(decided, lambda c, k: decided[c], extra_seeds=2) == (0, 0)
    # Configs 0 and 1 are tied on the first seed (0 ahead by one example); on two more seeds 1 is clearly better.
    tied = [np.r_[np.ones(101), np.zeros(99)].astype(bool), np.r_[np.ones(100), np.zeros(100)].astype(bool),
            np.zeros(200, dtype=bool)]
    more = lambda c, k: np.full(200, c == 1)
    assert sc.tied_with_choice(tied)[0] == 0 and sc.tied_with_choice(tied)[1] == [1]
    assert sc.reseed_tied_choice(tied, more, extra_seeds=2) == (1, 4)


# -- the too-small-split warning, before Ray ------------------------------------------------------------------


def _sweep(rates: list[float], val_fraction: float = 0.15) -> Any:
    from conftest import TINY_SWEEP
    from proselflc.tuning import build_sweep_config

    return build_sweep_config({
        **TINY_SWEEP, "base": {**TINY_SWEEP["base"], "data": {"name": "digits", "val_fraction": val_fraction}},
        "noise": {"kind": "symmetric", "rates": rates},
    })


def test_a_too_small_split_is_warned_about_naming_val_fraction_and_the_size_that_would_do() -> None:
    from proselflc.tuning.split_check import split_warnings, training_size, warning_text

    sweep = _sweep([0.2, 0.8])
    assert training_size(sweep) == (1347, 10)  # digits read as the sweep would (embedded: cheap)
    lines = split_warnings(sweep)
    assert [line.split(":")[0] for line in lines] == ["symmetric-0.2", "symmetric-0.8"]
    assert "202 validation examples (data.val_fraction 0.15 x 1347)" in lines[1]
    assert "needs 324,000" in lines[1] and "no data.val_fraction here does" in lines[1]
    # On a larger training set the size that would do is a val_fraction.
    big = split_warnings(sweep, size=(40_000, 10))
    assert big[0].startswith("symmetric-0.2: 6000 validation examples") and big[0].endswith(
        "needs 6,612: data.val_fraction >= 0.17 would do")
    assert "2-sigma paired test" in warning_text(lines)


def test_no_warning_when_the_split_is_large_enough() -> None:
    from proselflc.tuning.split_check import split_warnings, warning_text

    assert split_warnings(_sweep([0.0, 0.2], val_fraction=0.1), size=(200_000, 10)) == []
    assert warning_text([]) == ""


def test_the_check_says_unknown_rather_than_loading_a_dataset_that_needs_files(tmp_path: Path) -> None:
    from conftest import TINY_SWEEP
    from proselflc.tuning import build_sweep_config
    from proselflc.tuning.split_check import split_warnings

    sweep = build_sweep_config({**TINY_SWEEP, "base": {
        **TINY_SWEEP["base"], "data": {"name": "cifar10", "root": str(tmp_path)}, "model": {"name": "mlp"}}})
    assert split_warnings(sweep) == [("validation split check skipped: the size of cifar10 is unknown until its "
                                     "files are read")]


# -- a real tiny sweep: the trials keep their correctness, the manifest and the summary carry the certainty -----


@pytest.mark.ray
def test_a_sweep_keeps_correctness_and_reports_each_selections_certainty(tiny_sweep: Path) -> None:
    from proselflc.analysis import best_configs, load_sweep, summary
    from proselflc.sweep_contract import VAL_CORRECT_FILE, read_manifest

    manifest = read_manifest(tiny_sweep)
    df = load_sweep(tiny_sweep)
    best = best_configs(df).set_index("study")
    text = summary(str(tiny_sweep))
    for entry in manifest.studies:
        search = df[(df["study"] == entry.study) & (df["phase"] == "search")]
        full = search[search["epoch"] == 3]["trial_dir"].unique()
        assert len(full) >= 1
        for trial_dir in full:  # every trial that ran its last epoch kept it: n/8 bytes of bits
            stored = json.loads((tiny_sweep / trial_dir / VAL_CORRECT_FILE).read_text())
            assert stored["n"] == 60 and stored["epoch"] == 3
        found = entry.certainty
        assert found is not None and found.n_val == 60
        assert found.kappa == pytest.approx(sc.noise_kappa("symmetric", entry.noise_rate, 10))
        assert found.n_eff == pytest.approx(60 * found.kappa**2)
        if len(full) >= 2:
            assert entry.runner_up_trial is not None and found.runner_up == entry.runner_up_trial
            assert found.p_beats_runner_up is not None and 0.0 <= found.p_beats_runner_up <= 1.0
        else:
            assert found.p_beats_runner_up is None and found.reason.startswith("no runner-up")
        row = best.loc[entry.study]
        if found.p_beats_runner_up is None:
            assert np.isnan(row["certainty"]) and row["certainty_note"] == found.reason
        else:
            assert row["certainty"] == pytest.approx(found.p_beats_runner_up)
        assert f"  {entry.study}: P(beats runner-up) " in text


def test_a_train_run_directory_keeps_its_last_epochs_validation_correctness(tmp_path: Path) -> None:
    from proselflc.config import build_run_config
    from proselflc.training import Engine

    cfg = build_run_config({
        "name": "keep", "data": {"name": "digits", "limit": 300, "val_fraction": 0.2}, "model": {"name": "mlp", "hidden": 8},
        "noise": {"kind": "pairflip", "rate": 0.3}, "train": {"epochs": 2, "seed": 0, "progress": False},
    })
    engine = Engine(cfg, run_dir=tmp_path / "run")
    engine.run()
    stored = sc.decode_correct((tmp_path / "run" / sc.VAL_CORRECT_FILE).read_text())
    assert engine.val_correct is not None and np.array_equal(stored.correct, engine.val_correct)
    assert stored.epoch == 2 and stored.correct.size == 60
    assert stored.kappa == pytest.approx(1 - 0.3 * 10 / 9)
    assert stored.correct.mean() == pytest.approx(engine.history[-1]["val_accuracy"])
