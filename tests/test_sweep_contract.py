"""The Ray-free sweep contract: study keys, the manifest model, trial names and the one selection rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proselflc.config import ConfigError
from proselflc.sweep_contract import (
    Manifest,
    StudyEntry,
    StudyKey,
    read_manifest,
    select_best,
    trial_dirname,
    uses_clean_labels,
    write_manifest,
)


def test_study_keys_format_and_parse_back() -> None:
    key = StudyKey(kind="cifar100_superclass", rate=0.4, method="proselflc")
    assert str(key) == "cifar100_superclass-0.4/proselflc" and key.slug == "cifar100_superclass-0.4_proselflc"
    assert StudyKey.parse(str(key)) == key
    assert str(StudyKey.parse("symmetric-0/crossentropy")) == "symmetric-0/crossentropy"
    with pytest.raises(ValueError, match="is not '<noise kind>-<rate>/<method>'"):
        StudyKey.parse("symmetric/ce")
    assert trial_dirname(str(key), "final", "ab12") == "cifar100_superclass-0.4_proselflc_final_ab12"


def test_the_manifest_round_trips_and_names_bad_fields(tmp_path: Path) -> None:
    entry = StudyEntry(study="symmetric-0.4/ce", dataset="digits", model="mlp", noise_kind="symmetric",
                       noise_rate=0.4, method="ce", search_dir="trials", final_dir="trials")
    manifest = Manifest(version=2, sweep="s", studies=[entry])
    write_manifest(tmp_path, manifest)
    back = read_manifest(tmp_path)
    assert back == manifest and back.entry("symmetric-0.4/ce").status == "pending" and not back.finished
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["studies"][0]["status"] = "done"
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"studies.0.status: Input should be 'pending', 'searching', 'searched'"):
        read_manifest(tmp_path)
    with pytest.raises(ConfigError, match="is not in the manifest"):
        manifest.entry("symmetric-0.6/ce")


def test_a_manifest_of_an_earlier_version_reads_as_version_1(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"sweep": "old", "studies": [
        {"study": "symmetric-0.4/ce", "dataset": "digits", "model": "mlp", "noise_kind": "symmetric",
         "noise_rate": 0.4, "method": "ce", "search_dir": "symmetric-0.4/ce/search", "final_dir": "final",
         "status": "searched", "best_params": {"optim.lr": 0.1}}]}))
    assert read_manifest(tmp_path).version == 1


def test_the_selection_rule() -> None:
    results = [
        ("stopped", {"epoch": 2, "val_accuracy": 0.99}),
        ("a", {"epoch": 4, "val_accuracy": 0.8}),
        ("b", {"epoch": 4, "val_accuracy": 0.8}),  # a tie: the trial created first wins
        ("diverged", {"epoch": 4, "val_accuracy": 0.9, "diverged": True}),
        ("nan", {"epoch": 4, "val_accuracy": float("nan")}),
        ("bool", {"epoch": 4, "val_accuracy": True}),
        ("empty", None),
    ]
    assert select_best(results, "val_accuracy", "max", 4)[0] == "a"
    assert select_best(results[:1] + results[3:], "val_accuracy", "max", 4)[0] == "stopped"
    assert select_best(results[3:], "val_accuracy", "max", 4) is None
    assert uses_clean_labels("test_loss") and uses_clean_labels("noisy_corrected")
    assert uses_clean_labels("noisy_fit")  # the noisy subset is known only from the true labels
    assert not uses_clean_labels("val_accuracy") and not uses_clean_labels("train_loss")


@pytest.mark.subprocess
def test_the_contract_imports_no_ray() -> None:
    code = "import sys, proselflc.sweep_contract, proselflc.analysis.load; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
