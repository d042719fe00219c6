"""CIFAR-N human label noise on generated CIFAR-10 pickles with a label file in the authors' real format
(a torch-saved dict of numpy label arrays): a run, its measured noise rate, a refused file, and a sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks.cifar_files import write_cifar10, write_cifar_n_labels

from proselflc.config import ConfigError, build_run_config
from proselflc.training import Engine

PER_BATCH = 12  # 60 training images, 12 test images
#: Exactly these shares of the 60 labels differ from the clean ones (rounded: 6 and 24 labels).
RATES = {"aggre_label": 0.1, "random_label1": 0.2, "random_label2": 0.2, "random_label3": 0.2, "worse_label": 0.4}


@pytest.fixture(scope="module")
def cifar_n(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("cifar10n")
    write_cifar10(root, per_batch=PER_BATCH)
    clean = np.tile(np.arange(PER_BATCH) % 10, 5)  # write_cifar10's training labels, batch after batch
    labels = write_cifar_n_labels(root / "CIFAR-10_human.pt", clean, RATES)
    return root, root / "CIFAR-10_human.pt", labels


def _run(root: Path, noise: dict[str, Any], epochs: int = 2) -> dict[str, Any]:
    return {
        "name": "cifar10n",
        "data": {"name": "cifar10", "root": str(root), "val_fraction": 0.2},
        "noise": noise,
        "model": {"name": "mlp", "hidden": 8},
        "optim": {"lr": 0.05, "schedule": "constant", "warmup_epochs": 0},
        "train": {"epochs": epochs, "batch_size": 16, "seed": 0, "progress": False, "threads": 1},
    }


def test_a_run_trains_on_the_label_set_and_reports_the_measured_noise_rate(cifar_n) -> None:
    root, file, labels = cifar_n
    cfg = build_run_config(_run(root, {"kind": "human", "label_set": "worse", "file": str(file)}))
    engine = Engine(cfg)
    assert np.array_equal(engine.noisy_labels.numpy(), labels["worse_label"])
    assert np.array_equal(engine.true_labels.numpy(), labels["clean_label"])
    history = engine.run()
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["measured_noise_rate"] == pytest.approx(0.4)
    # The file carries the clean labels, so memorisation is measured as for synthetic noise.
    for key in ("noisy_fit", "noisy_corrected", "clean_fit"):
        assert 0.0 <= history[-1][key] <= 1.0
    aggre = Engine(build_run_config(_run(root, {"kind": "human", "label_set": "aggre", "file": str(file)}, epochs=1)))
    assert aggre.noise_rate == pytest.approx(0.1)


def test_the_measured_noise_rate_of_synthetic_noise_is_the_rate_asked_for(cifar_n) -> None:
    root, _, _ = cifar_n
    engine = Engine(build_run_config(_run(root, {"kind": "symmetric", "rate": 0.25}, epochs=1)))
    assert engine.noise_rate == 0.25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("permuted", r"clean labels differ from the dataset's training labels at \d+ of 60 examples"),
        ("short", r"labels 50 examples .* the training set has 60"),
        ("no_key", r"lacks 'worse_label'"),
        ("not_a_dict", r"holds a list, not the CIFAR-N dict"),
        ("missing", r"does not exist; download CIFAR-10_human\.pt"),
    ],
)
def test_a_file_that_does_not_match_the_dataset_is_refused(cifar_n, tmp_path: Path, change: str, message: str) -> None:
    import torch

    root, _, labels = cifar_n
    bad = tmp_path / "bad.pt"
    if change == "permuted":
        torch.save({**labels, "clean_label": np.roll(labels["clean_label"], 1)}, bad)
    elif change == "short":
        torch.save({k: v[:50] for k, v in labels.items()}, bad)
    elif change == "no_key":
        torch.save({k: v for k, v in labels.items() if k != "worse_label"}, bad)
    elif change == "not_a_dict":
        torch.save([labels["clean_label"]], bad)
    with pytest.raises(ConfigError, match=message):
        Engine(build_run_config(_run(root, {"kind": "human", "label_set": "worse", "file": str(bad)})))


def test_config_checks_name_the_field_before_any_file_is_read(cifar_n) -> None:
    root, file, _ = cifar_n
    with pytest.raises(ConfigError, match=r"noise\.label_set = 'wrose'.*did you mean 'worse'"):
        build_run_config(_run(root, {"kind": "human", "label_set": "wrose", "file": str(file)}))
    with pytest.raises(ConfigError, match=r"noise kind 'human' needs data\.name 'cifar10' or 'cifar100'"):
        build_run_config({"data": {"name": "digits"}, "noise": {"kind": "human", "label_set": "aggre", "file": str(file)}})
    with pytest.raises(ConfigError, match=r"does not use noise\.rate"):
        build_run_config(_run(root, {"kind": "human", "label_set": "aggre", "file": str(file), "rate": 0.2}))
    with pytest.raises(ConfigError, match=r"noisy100' belongs to the 100-class CIFAR-N file"):
        Engine(build_run_config(_run(root, {"kind": "human", "label_set": "noisy100", "file": str(file)})))


def _sweep(root: Path, file: Path, storage: Path) -> dict[str, Any]:
    return {
        "name": "cifar10n", "base": _run(root, {"kind": "human", "file": str(file)}),
        "noise": {"kind": "human", "rates": [0.0], "label_sets": ["aggre", "worse"]},
        "methods": {"crossentropy": {"search": {"optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.1}}}},
        "num_samples": 1, "scheduler": {"name": "fifo"}, "searcher": {"name": "random", "seed": 0},
        "resources": {"cpu": 1, "gpu": 0}, "storage_path": str(storage), "final_seeds": 0, "max_failures": 0,
    }  # fmt: skip


def test_a_sweep_refuses_a_file_of_another_dataset_before_ray_starts(cifar_n, tmp_path: Path) -> None:
    import torch

    from proselflc.tuning import build_sweep_config, run_sweep

    root, _, labels = cifar_n
    bad = tmp_path / "other.pt"
    torch.save({**labels, "clean_label": (labels["clean_label"] + 1) % 10}, bad)
    with pytest.raises(ConfigError, match="clean labels differ from the dataset's training labels at 60 of 60"):
        run_sweep(build_sweep_config(_sweep(root, bad, tmp_path)), verbose=False)
    assert not (tmp_path / "cifar10n").exists()


@pytest.mark.ray
def test_a_sweep_over_label_sets_runs_one_study_per_label_set(cifar_n, ray_session, tmp_path: Path) -> None:
    from proselflc.analysis import load_sweep
    from proselflc.tuning import build_sweep_config, run_sweep

    root, file, _ = cifar_n
    run_sweep(build_sweep_config(_sweep(root, file, tmp_path)), verbose=False)
    manifest = json.loads((tmp_path / "cifar10n" / "manifest.json").read_text())
    assert [s["study"] for s in manifest["studies"]] == ["human_aggre-0/crossentropy", "human_worse-0/crossentropy"]
    assert all(s["status"] == "finished" for s in manifest["studies"])
    df = load_sweep(tmp_path / "cifar10n")
    assert set(df["noise_kind"]) == {"human_aggre", "human_worse"} and set(df["noise_rate"]) == {0.0}
    measured = df.dropna(subset=["epoch"]).groupby("noise_kind")["measured_noise_rate"].last()
    assert measured.to_dict() == pytest.approx({"human_aggre": 0.1, "human_worse": 0.4})


def test_label_sets_name_the_studies_and_set_each_studys_label_set(cifar_n, tmp_path: Path) -> None:
    from proselflc.tuning import build_sweep_config
    from proselflc.tuning.sweep import new_manifest, studies

    root, file, _ = cifar_n
    sweep = build_sweep_config(_sweep(root, file, tmp_path))
    assert sweep.base.noise.label_set == "aggre", "the base run stands for the first label set"
    assert [(key, label_set) for key, _, _, label_set in studies(sweep)] == [
        ("human_aggre-0/crossentropy", "aggre"), ("human_worse-0/crossentropy", "worse")
    ]
    assert sweep.study_config(0.0, sweep.methods[0], "worse")["noise"]["label_set"] == "worse"
    assert [e.noise_kind for e in new_manifest(sweep).studies] == ["human_aggre", "human_worse"]
    repeated = _sweep(root, file, tmp_path)
    repeated["noise"]["label_sets"] = ["aggre", "aggre"]
    with pytest.raises(ConfigError, match=r"label sets \['aggre', 'aggre'\] repeat a label set"):
        build_sweep_config(repeated)
