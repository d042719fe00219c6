"""The benchmarks run end to end at their smallest size and print ratios; the search replay counts honestly.

Speeds are never asserted (2-core CI machines vary); what is checked is that each benchmark finishes,
prints the ratios it promises, and that the numbers are well-formed, plus the pure bookkeeping that
turns Ray Tune's result files into "epochs trained until the sweep was good enough".
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from benchmarks import BENCHMARKS
from benchmarks._harness import TrialRecord, row_times
from benchmarks.search_efficiency import epochs_to_reach, nearest, regret_at, regret_steps

PERCENT = r"(\d+\.\d)%"


def _trial(trial_id: str, epochs: int, val: float, test: float) -> TrialRecord:
    rows = [{"epoch": e, "val_accuracy": val, "test_accuracy": test, "diverged": False} for e in range(1, epochs + 1)]
    return TrialRecord(trial_id, {"id": trial_id}, rows, [float(e) for e in range(1, epochs + 1)], False)


def test_regret_counts_every_epoch_trained_and_follows_the_selection() -> None:
    # a: full length, poor on test; b: stopped early (not selectable), c: full length, better on val and test;
    # d: full length, good on test but below c on noisy val, so the selection stays c.
    trials = [_trial("a", 4, val=0.9, test=0.50), _trial("b", 2, val=0.99, test=0.99),
              _trial("c", 4, val=0.95, test=0.80), _trial("d", 4, val=0.93, test=0.90)]
    steps = regret_steps(trials, max_t=4, best_test=0.802)
    assert [spent for spent, _ in steps] == [4, 10, 14]
    assert [round(regret, 6) for _, regret in steps] == [30.2, 0.2, 0.2]
    assert regret_at(steps, 3) == float("inf") and round(regret_at(steps, 12), 6) == 0.2
    assert epochs_to_reach(steps) == 10  # a, b and c had trained 4 + 2 + 4 epochs when c was selected
    assert epochs_to_reach(regret_steps(trials, max_t=4, best_test=0.9)) is None


def test_a_suggestion_replays_its_nearest_grid_point_on_a_log_scale() -> None:
    axes = {"optim.lr": (0.003, 0.03, 0.3), "loss.trust_mode": ("global", "entropy")}
    assert nearest({"optim.lr": 0.009, "loss.trust_mode": "entropy"}, axes) == (0.003, "entropy")
    assert nearest({"optim.lr": 0.01, "loss.trust_mode": "global"}, axes) == (0.03, "global")


def testrow_times_pin_the_trial_start_between_whole_second_stamps() -> None:
    # A trial started at 100.3 s; rows at 0.5 s, 1.0 s, 1.6 s of its own clock, stamped with whole seconds.
    start = 100.3
    rows: list[dict[str, Any]] = [{"time_total_s": t, "timestamp": int(start + t)} for t in (0.5, 1.0, 1.6)]
    times = row_times(rows)
    assert all(abs(got - (start + r["time_total_s"])) < 0.2 for got, r in zip(times, rows, strict=True))
    assert times == sorted(times)


def test_registered_in_the_dispatcher() -> None:
    assert {"search_efficiency", "tuning_overhead"} <= set(BENCHMARKS)


def test_search_efficiency_smallest(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    """Trains a 4-config grid in-process, replays every strategy, and a second run replays from the cache."""
    from benchmarks import search_efficiency

    argv = ["--quick", "--epochs", "4", "--seeds", "1", "--num-samples", "3", "--workers", "1",
            "--cache", str(tmp_path / "grids"), "--plot", str(tmp_path / "regret.png")]
    assert search_efficiency.main(argv) == 0
    out = capsys.readouterr().out
    assert "symmetric 60%, proselflc: 4 configs x 4 epochs = 16 epochs" in out
    assert re.search(r"\d/4 configs within 0.5 points of the grid best", out), out
    for strategy in ("random + fifo", "tpe + asha", "tpe + onset", "tpe + onset2", "tpe + onset3"):
        assert re.search(rf"\| {re.escape(strategy)} +\| ", out), out
    assert re.search(r"\| tpe \+ onset3 +\| \d+/1 +\| \d+/1 +\| ", out), out  # every setting and study together
    assert "targets for tpe + onset3:" in out and (tmp_path / "regret.png").stat().st_size > 0
    lines = (tmp_path / "grids" / "symmetric-0.6-4ep-600ex.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all('"prediction_changes"' in line and '"test_correct"' in line for line in lines)
    assert search_efficiency.main(argv[:-2]) == 0
    assert "grid training: 0 s" in capsys.readouterr().out  # every config came from the cache


@pytest.mark.ray
def test_tuning_overhead_smallest(ray_session: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import tuning_overhead

    assert tuning_overhead.main(["--quick", "--trials", "1", "--full-trials", "1", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    for variant in ("platform", "reuse_actors=False", "dataset loaded per trial", "no checkpoint at the end",
                    "trains nothing (Ray floor)"):
        row = re.search(rf"\| {re.escape(variant)} +\| 1 +\| \d+ +\| (\d+)x", out)
        assert row is not None and int(row.group(1)) >= 1, out
    assert re.search(r"per extra report: -?\d+\.\d ms", out), out
    efficiency = re.search(r"\| whole Tuner \(start-up included\) +\| 1 +(?:\| [\d.x]+ +){4}\| (\d+\.\d\d) ", out)
    assert efficiency is not None and float(efficiency.group(1)) > 0, out


@pytest.mark.ray
def test_gpu_packing_smallest_runs_on_the_sessions_fake_gpus(ray_session, capsys):
    """The shared Ray declares 2 fake GPUs: the packing arms run and the ratio is printed (CPU numbers)."""
    from benchmarks import gpu_packing

    assert gpu_packing.main(["--quick", "--trials", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "gpu=0.25" in out and "fake GPUs" in out
    ratio = float(out.split("ratio packed / one per GPU: ")[1].split("x")[0])
    assert ratio > 0


#: The throughput benchmark at its smallest: a small CNN instead of ResNet-18, two batches, one timed epoch.
THROUGHPUT_SMOKE = ["--device", "cpu", "--model", "cnn", "--samples", "64", "--batch-size", "32", "--epochs", "1",
                    "--workers", "1"]


@pytest.mark.slow
def test_throughput_smallest_runs_each_system_in_its_own_process(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import throughput

    assert throughput.main(THROUGHPUT_SMOKE) == 0
    out = capsys.readouterr().out
    assert out.startswith("throughput: cnn, 64 CIFAR-shaped images, batch 32, 1 warm-up + 1 timed epoch(s), cpu"), out
    speeds = {
        key: float(re.search(rf"{key}.*? ([\d.]+) samples/s", out).group(1))
        for key in ("engine", "reference", "model only")
    }
    assert all(speed > 0 for speed in speeds.values()), out
    ratio = float(re.search(r"ratio engine / reference: (\d+\.\d\d)x", out).group(1))
    # The ratio is engine / reference of the unrounded speeds: the printed speeds (1 decimal) bound it, and
    # the printed ratio is that quotient to 2 decimals.
    engine, reference = speeds["engine"], speeds["reference"]
    low, high = (engine - 0.05) / (reference + 0.05), (engine + 0.05) / max(reference - 0.05, 1e-9)
    assert low - 0.005 <= ratio <= high + 0.005, (ratio, low, high, out)


@pytest.mark.slow
def test_throughput_names_the_system_that_failed() -> None:
    from benchmarks import throughput

    args = throughput.parse_args(THROUGHPUT_SMOKE)
    args.workers = -1  # past parse_args' check: DataLoader itself rejects it, inside the reference's process
    with pytest.raises(RuntimeError, match="the reference system failed"):
        throughput.measure(args)


def test_throughput_rejects_an_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import throughput

    with pytest.raises(SystemExit):
        throughput.parse_args(["--device", "cpu", "--model", "resnet19"])
    assert "--model: unknown model 'resnet19'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_cluster_utilisation_smallest_runs_both_arms_on_the_sessions_fake_gpus(ray_session, capsys):
    """Both arms (one study at a time, all side by side) of the smallest sweep finish; busy share and ratio print."""
    from benchmarks import cluster_utilisation

    argv = ["--quick", "--rates", "1", "--methods", "2", "--samples", "2", "--max-t", "2", "--epoch-s", "0.05",
            "--final-seeds", "1"]
    assert cluster_utilisation.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| serial +\| 2 +\| 6 +\|", out), out  # 2 studies x (2 search + 1 final) trials
    assert re.search(r"\| side-by-side +\| 2 +\| 6 +\|", out), out
    assert re.search(r"side by side vs\. one study at a time: \d+\.\d\dx shorter wall time", out), out


@pytest.mark.slow
def test_paper_recipes_smallest_trains_a_paper_config_as_written_and_projects_the_full_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One paper config on 160 generated CIFAR-100 images (real pickle format): a row with its pace and the
    full run's hours scaled to 50,000 images; a --match that names no config is refused."""
    from benchmarks import paper_recipes

    argv = ["--quick", "--device", "cpu", "--match", "shufflenetv2_crossentropy", "--train-images", "160"]
    assert paper_recipes.main(argv) == 0
    out = capsys.readouterr().out
    row = re.search(r"\| cifar100_shufflenetv2_crossentropy_symmetric0\.4 +\| (\d+) +\| 1\.00x +\| ([\d.]+) +\| - +\| "
                    r"([\d.]+) \(100 ep\.\) \|", out)
    assert row, out
    samples_per_s, epoch_s, full_h = (float(v) for v in row.groups())
    assert samples_per_s > 0 and epoch_s > 0
    assert full_h == pytest.approx(100 * epoch_s * 50_000 / 160 / 3600, rel=0.05, abs=0.01)
    assert paper_recipes.main(["--quick", "--match", "no-such-config"]) == 2
    assert "no config in" in capsys.readouterr().out


def test_selection_certainty_smallest_trains_caches_and_reports_calibration_and_regret(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from benchmarks import selection_certainty

    cache = tmp_path / "cache"
    assert selection_certainty.main(["--quick", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert len(list(cache.glob("*.npz"))) == 8  # 2 methods x 2 configs x 2 seeds, kept for the next run
    assert re.search(r"chosen vs runner-up, per study: 4 pairs; reported > 90% sure: \d+", out)
    assert re.search(r"every two configs of a split: 12 pairs", out)
    assert re.search(r"\| symmetric-0.4 \| 0.556 \| -?\d+\.\d\d +\| -?\d+\.\d\d", out)  # regret: both selections
    assert selection_certainty.main(["--quick", "--cache", str(cache)]) == 0
    assert "training" not in capsys.readouterr().out  # the cached grid is read back, nothing trains again
