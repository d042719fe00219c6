"""End-to-end sweeps on the shared Ray: real trials, real Optuna TPE, real ASHA stopping, final seeds,
the sweep-directory contract, divergence, preflight against the live cluster, and fractional-GPU packing."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from ray import tune

from conftest import TINY_SWEEP
from proselflc.analysis import best_configs, load_sweep, summary
from proselflc.config import ConfigError
from proselflc.sweep_contract import CURRENT_VERSION
from proselflc.trainables import trial_resources
from proselflc.training import METRIC_KEYS
from proselflc.tuning import build_sweep_config, run_sweep
from sweep_files import final_trial_dirs, results, results_cells, study_trial_dirs, study_trials, trial_dirs

pytestmark = pytest.mark.ray


def studies(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    return {s["study"]: s for s in json.loads((sweep_dir / "manifest.json").read_text())["studies"]}


def test_tiny_sweep_writes_the_documented_layout(tiny_sweep: Path) -> None:
    manifest = json.loads((tiny_sweep / "manifest.json").read_text())
    assert manifest["version"] == CURRENT_VERSION == 3 and manifest["final_seeds"] == [1, 2]
    assert manifest["sweep"] == "tiny" and manifest["metric"] == "val_accuracy" and manifest["mode"] == "max"
    assert manifest["max_t"] == 3
    assert [s["study"] for s in manifest["studies"]] == [
        "symmetric-0/crossentropy", "symmetric-0/proselflc", "symmetric-0.4/crossentropy", "symmetric-0.4/proselflc"
    ]
    resolved = yaml.safe_load((tiny_sweep / "sweep.yaml").read_text())
    assert resolved["name"] == "tiny" and resolved["base"]["data"]["limit"] == 600
    # ONE experiment for the whole sweep: 4 studies x (3 search trials + 2 final re-runs), nothing else.
    assert sorted(p.name for p in tiny_sweep.iterdir() if not p.name.startswith(".")) == [
        "manifest.json", "sweep.yaml", "trials"
    ]
    assert {".lock", ".state-backup"} <= {p.name for p in tiny_sweep.iterdir()}  # the driver lock, signed state
    assert len(trial_dirs(tiny_sweep / "trials")) == 4 * (3 + 2)
    for entry in manifest["studies"]:
        assert entry["status"] == "finished"
        assert entry["dataset"] == "digits" and entry["model"] == "mlp" and entry["noise_kind"] == "symmetric"
        assert entry["search_dir"] == "trials" and entry["final_dir"] == "trials"
        trials = study_trials(tiny_sweep, entry["study"])
        assert len(trials) == 3
        dirs = study_trial_dirs(tiny_sweep, entry["study"])
        # The searcher's creation order (the tie-break of the choice), recorded for the analysis:
        assert sorted(entry["trial_order"]) == [d.name for d in dirs]
        assert all(d.name.startswith(entry["study"].replace("/", "_") + "_search_") for d in dirs)
        space = set(resolved["methods"][0 if entry["method"] == "crossentropy" else 1]["search"])
        for params, rows in trials:
            assert set(params) == space  # only the sampled dotted keys
            assert rows and set(METRIC_KEYS) <= set(rows[-1]) and "training_iteration" in rows[-1]
            assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
        best = dict(zip([d.name for d in dirs], [p for p, _ in trials]))[entry["best_trial"]]
        assert entry["best_params"] == best
        finals = study_trials(tiny_sweep, entry["study"], "final")
        assert sorted(d.name for d in final_trial_dirs(tiny_sweep, entry["study"])) == sorted(entry["final_trials"])
        assert sorted(p["train.seed"] for p, _ in finals) == [1, 2]
        for params, rows in finals:
            assert {k: v for k, v in params.items() if k != "train.seed"} == entry["best_params"]
            assert rows[-1]["epoch"] == 3  # full length: no early stopping
        assert all(
            any(p.name.startswith("checkpoint_") for p in d.iterdir()) for d in final_trial_dirs(tiny_sweep, entry["study"])
        )


def test_the_runner_and_the_analysis_select_the_same_trial(tiny_sweep: Path) -> None:
    chosen = best_configs(load_sweep(tiny_sweep)).set_index("study")
    for study, entry in studies(tiny_sweep).items():
        assert entry["best_trial"].endswith("_" + chosen.loc[study, "trial_id"]), study
        assert chosen.loc[study, "selected_score"] == pytest.approx(entry["best_value"])


def test_asha_stops_some_trials_early(tiny_sweep: Path) -> None:
    epochs = [rows[-1]["epoch"] for study in studies(tiny_sweep) for _, rows in study_trials(tiny_sweep, study)]
    assert min(epochs) < 3 and max(epochs) == 3


def test_fixed_hyperparameters_reach_the_trials(tiny_sweep: Path) -> None:
    # The shared final experiment trains each study's own base: ProSelfLC's epsilon is g * e > 0 once the
    # run is under way; cross entropy's is 0.
    (proselflc,) = final_trial_dirs(tiny_sweep, "symmetric-0.4/proselflc")[:1]
    assert results(proselflc)[-1]["mean_epsilon"] > 0
    (ce,) = final_trial_dirs(tiny_sweep, "symmetric-0.4/crossentropy")[:1]
    assert results(ce)[-1]["mean_epsilon"] == 0


def test_the_summary_printed_after_a_sweep_has_every_rate_and_method(tiny_sweep: Path) -> None:
    text = summary(tiny_sweep)
    cells = results_cells(text)
    rates = {float(rate) for rate in cells}
    assert rates == {float(study.split("/")[0].split("-")[1]) for study in studies(tiny_sweep)}, text
    for row in cells.values():  # 2 final seeds per study: every cell is a mean ± std, best of its row in bold
        values = [row[method] for method in ("crossentropy", "proselflc")]
        assert all(re.fullmatch(r"(\*\*)?\d+\.\d\d ± \d+\.\d\d(\*\*)?", value) for value in values), text
        assert any(value.startswith("**") for value in values), text


def test_rerunning_a_finished_sweep_without_resume_is_refused(tiny_sweep: Path) -> None:
    sweep = build_sweep_config({**TINY_SWEEP, "storage_path": str(tiny_sweep.parent)})
    with pytest.raises(ConfigError, match="already exists: pass --resume"):
        run_sweep(sweep)
    changed = build_sweep_config({**TINY_SWEEP, "storage_path": str(tiny_sweep.parent), "num_samples": 5})
    with pytest.raises(ConfigError, match="differs from .* in num_samples"):
        run_sweep(changed, resume=True)
    # Resuming the finished sweep re-runs nothing.
    before = sorted(p.name for p in tiny_sweep.rglob("result.json"))
    lines: list[str] = []
    run_sweep(sweep, resume=True, log=lines.append)
    assert lines == [f"sweep tiny: 4 studies (0 to do) -> {tiny_sweep}"]
    assert sorted(p.name for p in tiny_sweep.rglob("result.json")) == before


def test_a_second_driver_on_the_same_sweep_is_refused(ray_session: Any, tmp_path: Path) -> None:
    from proselflc.tuning.lock import SweepLock

    sweep = build_sweep_config({**TINY_SWEEP, "storage_path": str(tmp_path)})
    with SweepLock(sweep.sweep_dir), pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        run_sweep(sweep)
    assert not (sweep.sweep_dir / "manifest.json").exists()  # refused before writing anything


def test_preflight_rejects_trials_the_cluster_cannot_place(ray_session: Any, tmp_path: Path) -> None:
    sweep = build_sweep_config({**TINY_SWEEP, "storage_path": str(tmp_path), "resources": {"cpu": 1, "gpu": 3}})
    with pytest.raises(ConfigError, match=r"resources.gpu = 3 \(lower it to at most 2\).*GPU 2"):
        run_sweep(sweep)
    sweep = build_sweep_config({**TINY_SWEEP, "storage_path": str(tmp_path), "resources": {"cpu": 4}})
    with pytest.raises(ConfigError, match=r"resources.cpu = 4"):
        run_sweep(sweep)
    assert not (tmp_path / "tiny").exists()  # nothing was started


def test_fractional_gpus_pack_at_most_four_trials_on_two_gpus(ray_session: Any, tmp_path: Path) -> None:
    """8 trials of 0.5 GPU on 2 GPUs. Each trial holds a file under live/ for as long as it holds its GPU share,
    and waits until it sees 4 such files (or until all 8 have started: the last ones may find fewer left), so
    packing is seen without timing: a file present means its trial holds its share, so no count is too high."""
    live, started = tmp_path / "live", tmp_path / "started"
    live.mkdir()
    started.mkdir()

    def probe(config: dict[str, Any]) -> None:
        """Record what a trial was given and whom it saw (nested, so Ray pickles it by value for the workers)."""
        gpu_ids = [str(i) for i in ray_session.get_gpu_ids()]
        mine = live / f"{config['i']}-gpu{'-'.join(gpu_ids)}"
        mine.touch()
        (started / str(config["i"])).touch()
        seen: list[list[str]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = sorted(p.name for p in live.iterdir())
            if not seen or names != seen[-1]:
                seen.append(names)
            if len(names) >= 4 or len(list(started.iterdir())) == 8:
                break
            time.sleep(0.02)
        mine.unlink()
        tune.report({"gpu_ids": gpu_ids, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                     "seen": seen})

    tuner = tune.Tuner(
        tune.with_resources(probe, trial_resources(cpu=0.25, gpu=0.5)),
        param_space={"i": tune.grid_search(list(range(8)))},
        tune_config=tune.TuneConfig(reuse_actors=True),  # 4 worker processes start, not 8
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pack", verbose=0),
    )
    results = [r.metrics for r in tuner.fit()]
    assert len(results) == 8
    for r in results:
        assert len(r["gpu_ids"]) == 1 and r["gpu_ids"][0] in {"0", "1"}
        assert r["cuda_visible_devices"] == r["gpu_ids"][0]
    snapshots = [names for r in results for names in r["seen"]]
    for names in snapshots:
        assert len(names) <= 4, names  # never more than 2 GPUs / 0.5
        for gpu in ("0", "1"):
            assert sum(name.endswith(f"-gpu{gpu}") for name in names) <= 2, names  # two 0.5-GPU trials per GPU
    assert max(len(names) for names in snapshots) == 4  # packed: two trials on each GPU at once


def _stand_in(barrier: Path | None) -> Any:
    """A trial function that reports a learning curve without training (nested: Ray pickles it by value).

    Its val_accuracy sits near 0.9 at noise rate 0 and near 0.1 at rate 0.6. With `barrier`, a trial first
    waits (at most 60 s) until a trial of another study has started too, and reports whether it saw one, and
    until `barrier/released` exists (the driver's `StatusLog` touches it once a status line shows both)."""

    def run(params: dict[str, Any], *, base: dict[str, Any], **_: Any) -> None:
        study = f"{base['noise']['kind']}-{base['noise']['rate']:g}"
        saw_other = released = False
        if barrier is not None:
            (barrier / "studies" / f"{study}-{os.getpid()}-{time.monotonic_ns()}").touch()
            deadline = time.monotonic() + 60
            while not (saw_other and released) and time.monotonic() < deadline:
                saw_other = any(not p.name.startswith(study + "-") for p in (barrier / "studies").iterdir())
                released = (barrier / "released").exists()
                time.sleep(0.05)
        level = 0.9 if base["noise"]["rate"] == 0 else 0.1
        for epoch in range(1, base["train"]["epochs"] + 1):
            value = level + 0.01 * params.get("optim.lr", 0.1) * epoch
            tune.report({"epoch": epoch, "val_accuracy": value, "test_accuracy": value, "diverged": False,
                         "saw_other_study": saw_other})

    return run


class StatusLog:
    """The sweep's log kept in a list; the first status line containing `awaited` touches `release`.

    The driver writes status lines while trials run: trials that wait for `release` are thus still running
    when a status line names them, however late the driver's status tick comes."""

    def __init__(self, awaited: str, release: Path) -> None:
        self.awaited, self.release = awaited, release
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if line.startswith("status: ") and self.awaited in line:
            self.release.touch()


def _stand_in_sweep(tmp_path: Path, name: str, **changes: Any) -> Any:
    raw = {
        **TINY_SWEEP,
        "name": name,
        "storage_path": str(tmp_path),
        "base": {**TINY_SWEEP["base"], "train": {**TINY_SWEEP["base"]["train"], "epochs": 4}},
        "noise": {"kind": "symmetric", "rates": [0.0, 0.6]},
        "methods": {"crossentropy": TINY_SWEEP["methods"]["crossentropy"]},
        "num_samples": 4,
        "final_seeds": 1,
        **changes,
    }
    return build_sweep_config(raw)


def test_trials_of_different_studies_run_side_by_side(ray_session: Any, tmp_path: Path) -> None:
    """Two trial slots and one trial in flight per study: the second slot can only go to the other study, so
    each study's first trial meets the other's at a barrier (it would wait out its 60 s in a serial sweep)."""
    barrier = tmp_path / "barrier"
    (barrier / "studies").mkdir(parents=True)
    sweep = _stand_in_sweep(
        tmp_path, "overlap", resources={"cpu": 1, "gpu": 0}, max_concurrent_trials=2, per_study_concurrency=1
    )
    both = "2 running; 2 trials running, holding 0/2 GPUs (0%), 2/2 CPUs (100%)"
    log = StatusLog(both, barrier / "released")
    sweep_dir = run_sweep(sweep, log=log, status_every_s=0.2, trial_function=_stand_in(barrier))
    firsts = []
    for study in ("symmetric-0/crossentropy", "symmetric-0.6/crossentropy"):
        entry = studies(sweep_dir)[study]
        firsts.append(results(sweep_dir / "trials" / entry["trial_order"][0])[0]["saw_other_study"])
        assert len(study_trials(sweep_dir, study)) == 4 and len(study_trials(sweep_dir, study, "final")) == 1
    assert firsts == [True, True]
    status = [line for line in log.lines if line.startswith("status: ")]
    assert any(both in line for line in status), status


def test_a_low_scoring_study_is_not_cut_by_another_study_s_rungs(ray_session: Any, tmp_path: Path) -> None:
    """One trial at a time, the 0%-noise study first: with one ASHA for both, every 60%-noise trial (val 0.1)
    would fall below the 0%-noise rung values (0.9) at its first rung and stop. Per-study ASHA lets its best
    trial run the full length, and the searched config it re-runs is its own."""
    sweep = _stand_in_sweep(tmp_path, "isolation", scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
                            max_concurrent_trials=1)
    sweep_dir = run_sweep(sweep, log=lambda line: None, trial_function=_stand_in(None))
    low = study_trials(sweep_dir, "symmetric-0.6/crossentropy")
    assert len(low) == 4 and max(rows[-1]["epoch"] for _, rows in low) == 4
    assert min(rows[-1]["epoch"] for _, rows in low) < 4  # its own rungs do stop its weaker trials
    entry = studies(sweep_dir)["symmetric-0.6/crossentropy"]
    assert entry["status"] == "finished" and entry["best_value"] < 0.2


@pytest.fixture(scope="module")
def diverging_sweep(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One sweep, two studies: cross entropy, re-run on the whole noisy training set (`final_include_val`), and
    a learning rate that always diverges. Its sweep dir and the lines it logged."""
    raw = {
        **TINY_SWEEP,
        "name": "diverging",
        "storage_path": str(tmp_path_factory.mktemp("diverging")),
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {
            "crossentropy": {"search": {}},
            "absurd_lr": {"loss": "crossentropy",
                          "search": {"optim.lr": {"type": "choice", "values": [1.0e6]},
                                     "optim.momentum": {"type": "choice", "values": [0.99]}}},
        },
        "num_samples": 2,
        "final_seeds": 1,
        "final_include_val": True,
    }
    lines: list[str] = []
    return run_sweep(build_sweep_config(raw), log=lines.append), lines


@pytest.mark.faults
def test_a_diverging_trial_is_recorded_and_stopped_and_the_analysis_carries_on(
    diverging_sweep: tuple[Path, list[str]],
) -> None:
    sweep_dir, lines = diverging_sweep
    bad = study_trials(sweep_dir, "symmetric-0.4/absurd_lr")
    assert bad and all(rows[-1]["diverged"] is True for _, rows in bad)
    assert all(rows[-1]["epoch"] < 3 for _, rows in bad), "a diverged trial is stopped, not trained to the end"
    assert any("diverged" in line for line in lines)
    entry = studies(sweep_dir)["symmetric-0.4/absurd_lr"]
    assert entry["status"] == "finished" and entry["best_params"] is None
    assert not final_trial_dirs(sweep_dir, "symmetric-0.4/absurd_lr"), "no usable trial: nothing to re-run"

    df = load_sweep(sweep_dir)
    statuses = df[df["method"] == "absurd_lr"].groupby("trial_id")["status"].last()
    assert set(statuses) == {"diverged"}
    best = best_configs(df).set_index("study")
    assert best.loc["symmetric-0.4/crossentropy", "selected_score"] > 0, best
    assert "symmetric-0.4/absurd_lr" not in best.index or pd.isna(best.loc["symmetric-0.4/absurd_lr", "selected_score"])
    text = summary(sweep_dir)
    row = results_cells(text)["0.4"]
    assert re.fullmatch(r"\*\*\d+\.\d\d\*\*", row["crossentropy"]), text  # one final seed: a mean, the row's best
    assert row["absurd_lr"] == "–", text  # no usable trial: an empty cell, not a number


def test_final_runs_can_train_on_the_validation_split_too(diverging_sweep: tuple[Path, list[str]]) -> None:
    """`final_include_val`: the re-runs train on the whole noisy training set (as the papers' final numbers do)."""
    sweep_dir, _ = diverging_sweep
    ((params, rows),) = study_trials(sweep_dir, "symmetric-0.4/crossentropy", "final")
    assert params == {"data.val_fraction": 0.0, "train.seed": 1}
    assert rows[-1]["epoch"] == 3 and rows[-1]["test_accuracy"] > 0
    chosen = best_configs(load_sweep(sweep_dir)).set_index("study").loc["symmetric-0.4/crossentropy"]
    assert chosen["final_n"] == 1 and bool(chosen["final_matches_selection"])
