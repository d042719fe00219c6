"""`proselflc report --optuna-storage`: the tiny sweep's studies in a real SQLite Optuna storage,
read back with Optuna's `load_study` and through a real `optuna-dashboard` server's HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from proselflc.analysis import load_sweep
from proselflc.analysis.optuna_export import STATES, export_optuna
from proselflc.cli import main

pytestmark = pytest.mark.ray


def _expected(df: pd.DataFrame) -> dict[str, dict[TrialState, int]]:
    """{study name: {state: count}} the export must hold, from load_sweep's statuses of search trials."""
    trials = df[df["phase"] == "search"].drop_duplicates(["study", "trial_id"])
    out: dict[str, dict[TrialState, int]] = {}
    for _, row in trials.iterrows():
        counts = out.setdefault(f"{df.attrs['sweep']}/{row['study']}", {})
        state = STATES[row["status"]]
        counts[state] = counts.get(state, 0) + 1
    return out


def test_cli_export_matches_the_sweep_and_re_export_replaces(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    df = load_sweep(tiny_sweep)
    argv = ["report", str(tiny_sweep), "--out", str(tmp_path / "report"), "--no-plots", "--optuna-storage", url]
    assert main(argv) == 0
    assert f"exported 4 Optuna studies to {url}" in capsys.readouterr().out
    assert main(argv) == 0  # a second export replaces, never duplicates
    expected = _expected(df)
    assert sorted(optuna.get_all_study_names(url)) == sorted(expected)
    search = df[df["phase"] == "search"]
    for name, counts in expected.items():
        study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials(deepcopy=False)
        assert {s: sum(t.state == s for t in trials) for s in counts} == counts
        assert len(trials) == sum(counts.values())  # search trials only: no final re-runs
        assert study.direction == optuna.study.StudyDirection.MAXIMIZE
        for trial in trials:
            rows = search[(search["study"] == study.user_attrs["study"]) & (search["trial_id"] == trial.user_attrs["trial_id"])]
            rows = rows.dropna(subset=["epoch"]).sort_values("epoch")
            assert trial.intermediate_values == dict(zip(rows["epoch"].astype(int), rows["val_accuracy"]))
            assert trial.value == pytest.approx(rows["val_accuracy"].iloc[-1])
            assert trial.params["optim.lr"] == pytest.approx(rows["optim.lr"].iloc[0])
            assert trial.distributions["optim.lr"] == optuna.distributions.FloatDistribution(0.01, 0.5, log=True)
    assert any(TrialState.PRUNED in c for c in expected.values()), "ASHA stopped no trial in the tiny sweep"


def test_bad_storage_url_fails_before_writing_anything(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["report", str(tiny_sweep), "--out", str(out), "--optuna-storage", str(tmp_path / "x.db")]) == 2
    assert "is not a database URL" in capsys.readouterr().err and not out.exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_optuna_dashboard_lists_the_exported_studies(tiny_sweep: Path, tmp_path: Path) -> None:
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("optuna-dashboard is not installed: `pip install -e '.[tracking]'` (make test does)")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    names = export_optuna(tiny_sweep, url)
    port = _free_port()
    server = subprocess.Popen(
        [exe, url, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = None
        deadline = time.monotonic() + 30
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    body = json.loads(response.read())
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, f"optuna-dashboard exited: {server.stderr.read() if server.stderr else ''}"
                time.sleep(0.2)
        assert body is not None, "optuna-dashboard did not answer within 30 s"
        listed = {s["study_name"]: s for s in body["study_summaries"]}
        assert sorted(listed) == sorted(names)
        assert all(s["directions"] == ["maximize"] for s in listed.values())
        study_id = listed[names[0]]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}", timeout=5) as response:
            detail = json.loads(response.read())
        assert len(detail["trials"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=10)
