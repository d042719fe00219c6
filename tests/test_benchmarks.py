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
from benchmarks.search_efficiency import replay

PERCENT = r"(\d+\.\d)%"


def _trial(trial_id: str, start: float, epochs: int, val: float, test: float, per_epoch: float = 1.0) -> TrialRecord:
    rows = [{"epoch": e, "val_accuracy": val, "test_accuracy": test, "diverged": False} for e in range(1, epochs + 1)]
    return TrialRecord(trial_id, {"id": trial_id}, rows, [start + per_epoch * e for e in range(1, epochs + 1)], False)


def test_replay_counts_every_epoch_trained_until_the_selection_is_good_enough() -> None:
    # a: full length, best on noisy val but poor on test; b: stopped early; c: full length, good on test.
    # c finishes at t=10, when a (4 epochs), b (2) and c (4) have trained: 10 epochs, whatever order they ran in.
    a = _trial("a", 0.0, 4, val=0.9, test=0.50)
    b = _trial("b", 4.0, 2, val=0.99, test=0.99)
    c = _trial("c", 6.0, 4, val=0.95, test=0.80)
    assert replay([a, b, c], max_t=4, target=0.795, start=0.0) == (10, 10.0)
    # A target no full-length selection reaches: never (the early-stopped b is not selectable).
    assert replay([a, b, c], max_t=4, target=0.9, start=0.0) == (None, None)


def test_replay_follows_the_selection_not_the_best_test_seen() -> None:
    # c is good on test but loses to a on noisy val: the selection stays a, so the target is never met.
    a = _trial("a", 0.0, 3, val=0.9, test=0.5)
    c = _trial("c", 3.0, 3, val=0.8, test=0.9)
    assert replay([a, c], max_t=3, target=0.85, start=0.0) == (None, None)


def testrow_times_pin_the_trial_start_between_whole_second_stamps() -> None:
    # A trial started at 100.3 s; rows at 0.5 s, 1.0 s, 1.6 s of its own clock, stamped with whole seconds.
    start = 100.3
    rows: list[dict[str, Any]] = [{"time_total_s": t, "timestamp": int(start + t)} for t in (0.5, 1.0, 1.6)]
    times = row_times(rows)
    assert all(abs(got - (start + r["time_total_s"])) < 0.2 for got, r in zip(times, rows, strict=True))
    assert times == sorted(times)


def test_registered_in_the_dispatcher() -> None:
    assert {"search_efficiency", "tuning_overhead"} <= set(BENCHMARKS)


@pytest.mark.ray
def test_search_efficiency_smallest(ray_session: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import search_efficiency

    argv = ["--quick", "--trust-modes", "global", "entropy", "--exp-bases", "8", "--temperatures", "1",
            "--epochs", "2", "--grace-period", "1", "--seeds", "1", "--num-samples", "2"]
    assert search_efficiency.main(argv) == 0
    out = capsys.readouterr().out
    assert "grid: 2 configs x 2 epochs = 4 epochs" in out
    mean = re.search(rf"mean epochs-to-reach / grid epochs: {PERCENT}", out)
    assert mean is not None, out
    # The sweep trains at most 2 trials x 2 epochs: at most the grid's 4 epochs.
    assert 0 < float(mean.group(1)) <= 100
    assert re.search(rf"mean whole-sweep / grid: epochs {PERCENT}, wall {PERCENT}", out), out


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


def test_gpu_packing_smallest_runs_on_the_sessions_fake_gpus(ray_session, capsys):
    """The shared Ray declares 2 fake GPUs: the packing arms run and the ratio is printed (CPU numbers)."""
    from benchmarks import gpu_packing

    assert gpu_packing.main(["--quick", "--trials", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "gpu=0.25" in out and "fake GPUs" in out
    ratio = float(out.split("ratio packed / one per GPU: ")[1].split("x")[0])
    assert ratio > 0


def test_throughput_smallest_runs_each_system_in_its_own_process(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import throughput

    argv = ["--device", "cpu", "--samples", "64", "--batch-size", "32", "--epochs", "1", "--workers", "1"]
    assert throughput.main(argv) == 0
    out = capsys.readouterr().out
    speeds = {
        key: float(re.search(rf"{key}.*?([\d.]+) samples/s", out).group(1))
        for key in ("engine", "reference", "model only")
    }
    assert all(speed > 0 for speed in speeds.values()), out
    ratio = float(re.search(r"ratio engine / reference: ([\d.]+)x", out).group(1))
    assert ratio == pytest.approx(speeds["engine"] / speeds["reference"], abs=0.01)


def test_throughput_names_the_system_that_failed() -> None:
    from benchmarks import throughput

    args = throughput.parse_args(["--device", "cpu", "--samples", "64", "--batch-size", "32", "--epochs", "1"])
    args.workers = -1  # past parse_args' check: DataLoader itself rejects it, inside the reference's process
    with pytest.raises(RuntimeError, match="the reference system failed"):
        throughput.measure(args)
