"""Wrong-but-accepted inputs are refused, and odd inputs get one clear paragraph instead of an internal error.

Issue 24's findings 9 (a report mode against the metric, zero widths), 10 (internal errors) and 11 (minor):
each test feeds the input the probe fed and reads what the user sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from proselflc import storage
from proselflc.analysis.load import load_sweep
from proselflc.cli import main
from proselflc.config import ConfigError, build_run_config, load_run_config, read_yaml
from proselflc.sweep_contract import read_manifest
from proselflc.tuning.config import build_sweep_config
from proselflc.tuning.config import load_sweep as load_sweep_file
from test_analysis_sweeps import Study, Trial, write_sweep

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DIGITS = str(CONFIGS / "digits.yaml")
SWEEP = {"name": "s", "base": {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": 16}},
         "noise": {"kind": "symmetric", "rates": [0.4]}, "methods": {"crossentropy": {}}, "num_samples": 2}


def _sweep(root: Path) -> Path:
    low = Trial({"optim.lr": 0.1}, {"train_loss": [1.0, 0.2, 0.3, 0.25], "val_accuracy": [0.5, 0.6, 0.7, 0.7]})
    high = Trial({"optim.lr": 0.01}, {"train_loss": [0.9, 0.8, 0.7, 0.6], "val_accuracy": [0.5, 0.6, 0.7, 0.8]})
    return write_sweep(root, [Study("symmetric", 0.4, "crossentropy", [low, high])])


# -- 9: wrong but accepted ------------------------------------------------------------------------------------

def test_report_refuses_a_mode_against_the_metric_s_direction(tmp_path: Path, capsys) -> None:
    sweep = _sweep(tmp_path)
    assert main(["report", str(sweep), "--select-by", "train_loss", "--mode", "max", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "--mode 'max' for --select-by 'train_loss'" in err and "--mode min" in err
    assert main(["report", str(sweep), "--select-by", "train_loss", "--mode", "min", "--no-plots",
                 "--format", "md"]) == 0


def test_zero_widths_are_refused_also_when_a_search_range_reaches_zero() -> None:
    for override, field in (("model.hidden=0", "model.hidden = 0"), ("model.depth=-1", "model.depth = -1")):
        with pytest.raises(ConfigError, match=f"{field}.*outside the allowed range"):
            load_run_config(DIGITS, [override])
    with pytest.raises(ConfigError, match=r"model.width = 0 .*outside the allowed range \[1, inf\)"):
        build_run_config({"model": {"name": "cnn", "width": 0}})
    searching = {**SWEEP, "methods": {"crossentropy": {"search": {"model.hidden": {"type": "randint", "low": 0, "high": 64}}}}}
    with pytest.raises(ConfigError, match=r"model.hidden: .* can sample 0, which is invalid"):
        build_sweep_config(searching)


# -- 10: internal errors ---------------------------------------------------------------------------------------

def test_set_base_to_a_file_works_like_base_in_the_sweep_file(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({**SWEEP, "storage_path": str(tmp_path)}))
    sweep = load_sweep_file(path, [f"base={os.path.relpath(DIGITS)}", "num_samples=3"])
    assert sweep.base.model.kwargs["hidden"] == 128 and sweep.base.name == "digits-mlp"  # digits.yaml's, not 16
    with pytest.raises(ConfigError, match="base"):
        load_sweep_file(path, ["base=[1, 2]"])


@pytest.mark.parametrize(
    ("text", "says"),
    [("name: x\n\0\n", "is not a text config: unacceptable character #x0000"),
     ("a: " + "[" * 10000, "nests lists or mappings too deeply")],
)
def test_a_nul_byte_or_deep_nesting_is_one_paragraph_naming_the_file(tmp_path: Path, capsys, text: str, says: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says):
        read_yaml(path)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert says in err and str(path) in err and "internal error" not in err


def test_thread_counts_that_would_crash_the_process_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"train.threads: Input should be less than or equal to 1024 \(got 100000\)"):
        load_run_config(DIGITS, ["train.threads=100000"])
    assert load_run_config(DIGITS, ["train.threads=4"]).train.threads == 4


def test_a_non_numeric_epoch_in_result_json_is_skipped_with_a_warning(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path)
    [result] = [p for p in (sweep / "symmetric-0.4" / "crossentropy" / "search").glob("*/result.json")
                if '"optim.lr": 0.1' in p.read_text()]
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    rows[1]["epoch"] = "NaN"
    result.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_sweep(sweep)
    assert any("epoch is not a finite number" in str(w.message) and "'NaN'" in str(w.message) for w in caught)
    assert sorted(frame[frame["optim.lr"] == 0.1]["epoch"]) == [1, 3, 4]


def test_a_directory_that_is_a_link_is_not_removed_through_it(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    (real / "keep").mkdir(parents=True)
    link = tmp_path / "sweep" / "trials"
    link.parent.mkdir()
    link.symlink_to(real)
    with pytest.raises(ConfigError, match=r"trials' is a symbolic link .*does not remove or replace a directory"):
        storage.as_dir(link).remove_tree()
    assert (real / "keep").is_dir()


# -- 11: minor -------------------------------------------------------------------------------------------------

def test_a_garbled_manifest_names_its_file(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path)
    for garbage in (b"\xff\xfe\x00garbage", b"{" * 100000, b'{"sweep": '):
        (sweep / "manifest.json").write_bytes(garbage)
        with pytest.raises(ConfigError, match=r"manifest.json' is not valid JSON, so not a readable sweep manifest"):
            read_manifest(sweep)


def test_a_directory_as_base_is_named_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"base: config file '.*' is a directory"):
        build_sweep_config({**SWEEP, "base": str(tmp_path)})


def test_a_huge_value_is_not_echoed_whole() -> None:
    with pytest.raises(ConfigError) as refused:
        build_run_config({"optim": {"milestones": [5] * 150000}}, source="run.yaml")
    text = str(refused.value)
    assert "optim.milestones" in text and "150000 items: [5, 5," in text and "more characters" in text
    assert len(text) < 3000


@pytest.mark.subprocess
def test_an_existing_sweep_is_refused_before_ray_starts(tmp_path: Path) -> None:
    """RAY_ADDRESS names a port nothing listens on: a driver that tried to connect would fail otherwise."""
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({**SWEEP, "storage_path": str(tmp_path / "results")}))
    (tmp_path / "results" / "s").mkdir(parents=True)
    (tmp_path / "results" / "s" / "sweep.yaml").write_text("name: s\n")
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "proselflc.cli", "tune", str(path)], check=False, capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "already exists: pass --resume" in done.stderr
