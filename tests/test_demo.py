"""The quickstart (`make demo`) in small: the memorisation table is there and comes from the final re-runs.

The real quickstart takes minutes; this runs its own sweep file with fewer rates, methods, trials and epochs
on the shared Ray, then checks the report's memorisation cells against the final trials' own result.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proselflc.analysis import build_report, summary
from proselflc.tuning import build_sweep_config, run_sweep
from sweep_files import study_trials

pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def test_a_small_quickstart_reports_memorisation_of_the_final_runs(ray_session: Any, tmp_path: Path) -> None:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["base"]["train"]["epochs"] = 6
    raw["base"]["optim"]["milestones"] = [4, 5]
    raw["base"]["data"]["limit"] = 500
    raw["noise"]["rates"] = [0.4, 0.6]
    raw["methods"] = {k: raw["methods"][k] for k in ("crossentropy", "proselflc")}
    raw.update(num_samples=2, scheduler={"name": "asha", "grace_period": 2, "reduction_factor": 2}, storage_path=str(tmp_path))
    sweep_dir = run_sweep(build_sweep_config(raw), log=lambda line: None)

    report = build_report(sweep_dir)
    table = report.memorisation
    assert list(table.columns) == ["crossentropy", "proselflc"] and list(table.index) == [0.4, 0.6]
    for rate in (0.4, 0.6):
        for method in ("crossentropy", "proselflc"):
            finals = study_trials(sweep_dir, f"symmetric-{rate:g}/{method}", "final")
            assert len(finals) == 2
            fit = sum(rows[-1]["noisy_fit"] for _, rows in finals) / 2
            corrected = sum(rows[-1]["noisy_corrected"] for _, rows in finals) / 2
            assert table.loc[rate, method] == f"{100 * fit:.1f} / {100 * corrected:.1f}"
    printed = summary(sweep_dir)
    assert "Memorisation of the noisy labels: noisy_fit / noisy_corrected (%)" in printed
    assert table.loc[0.6, "proselflc"] in printed
