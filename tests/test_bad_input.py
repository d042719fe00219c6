"""Malformed sweeps and runs are rejected before any trial starts, in one paragraph naming field and value."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proselflc.cli import main
from proselflc.config import ConfigError
from proselflc.tuning import build_sweep_config

VALID: dict[str, Any] = {
    "name": "bad-input",
    "base": {"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 3}},
    "noise": {"kind": "symmetric", "rates": [0.2, 0.4]},
    "methods": {"proselflc": {"hyperparameters": {"trust_mode": "entropy"},
                              "search": {"loss.exp_base": {"type": "loguniform", "low": 2, "high": 32}}}},
    "num_samples": 2,
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0},
    "final_seeds": 1,
}
#: (path into the sweep dict, the name a message must mention)
FIELDS = [
    (("name",), "name"),
    (("noise", "kind"), "noise.kind"),
    (("noise", "rates"), "noise.rates"),
    (("num_samples",), "num_samples"),
    (("final_seeds",), "final_seeds"),
    (("scheduler", "grace_period"), "scheduler"),
    (("scheduler", "reduction_factor"), "scheduler"),
    (("resources", "cpu"), "resources.cpu"),
    (("resources", "gpu"), "resources.gpu"),
    (("base", "train", "epochs"), "base.train.epochs"),
    (("base", "model", "name"), "base.model"),
    (("base", "data", "name"), "base.data"),
    (("methods", "proselflc", "hyperparameters", "trust_mode"), "proselflc"),
    (("methods", "proselflc", "search", "loss.exp_base", "low"), "proselflc"),
]
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.lists(st.floats(min_value=-2, max_value=2), max_size=3),
)


def mutate(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=junk)
def test_a_malformed_sweep_field_is_rejected_naming_it(field, value, tmp_path_factory):
    path, name = field
    raw = mutate(path, value)
    raw["storage_path"] = str(tmp_path_factory.getbasetemp() / "never-written")
    try:
        build_sweep_config(raw)
    except ConfigError as err:
        message = str(err)
        assert name in message, f"{name!r} not named in: {message}"
        assert "Traceback" not in message
    assert not (tmp_path_factory.getbasetemp() / "never-written").exists(), "validation must not write anything"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"noise": {"kind": "symmetric", "rates": [0.4, 1.2]}}, "noise.rates: Value error, noise rates [1.2] are outside [0, 1)"),
        ({"methods": {"nope": {}}}, "nope"),
        # A missing dataset is found when the driver loads it, after Ray has started: Ray's processes run.
        pytest.param({"base": {"data": {"name": "cifar100", "root": "/nonexistent"}}}, "cifar100",
                     marks=pytest.mark.subprocess),
        ({"resources": {"cpu": 1, "gpu": -1}}, "resources.gpu"),
        ({"methods": {"proselflc": {"hyperparameters": {"logit_temperature": 0}}}}, "logit_temperature"),
        ({"methods": {"labelsmoothing": {"hyperparameters": {"epsilon": 1.5}}}}, "epsilon"),
    ],
)
def test_cli_rejects_a_bad_sweep_in_one_paragraph_before_starting_ray(change, expected, tmp_path, capsys):
    raw = {**copy.deepcopy(VALID), **change, "storage_path": str(tmp_path / "results")}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("proselflc tune: error:")
    assert expected.split(": Value error")[0].split(",")[0] in err
    assert not (tmp_path / "results").exists(), "nothing is written for a rejected sweep"


@pytest.mark.subprocess
def test_debug_shows_the_traceback(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({**VALID, "num_samples": 0}))
    proc = subprocess.run([sys.executable, "-m", "proselflc.cli", "--debug", "tune", str(sweep)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "num_samples" in proc.stderr


def test_missing_and_malformed_files_are_named(tmp_path, capsys):
    assert main(["tune", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert main(["tune", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    assert main(["train", str(listed)]) == 2
    assert "must hold a mapping" in capsys.readouterr().err


def test_a_dataset_root_without_its_files_is_rejected_with_the_path(tmp_path, capsys):
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({"data": {"name": "cifar100", "root": str(tmp_path / "no-cifar")},
                                   "model": {"name": "resnet18"}, "train": {"epochs": 1}}))
    assert main(["train", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no-cifar" in err and "Traceback" not in err


def test_malformed_deeploc_rows_are_reported_with_their_line(tmp_path, capsys):
    sample = Path(__file__).resolve().parent / "data" / "deeploc_sample.csv"
    lines = sample.read_text().splitlines()[:40]
    lines.insert(5, "M K L V,Nowhere,M,extra,columns")
    csv = tmp_path / "deeploc.csv"
    csv.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({"data": {"name": "deeploc", "root": str(csv), "task": "loc"},
                                   "model": {"name": "protein_transformer"}, "train": {"epochs": 1}}))
    assert main(["train", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "data.root" in err and "line 6" in err
