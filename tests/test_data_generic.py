"""Your own noisy data: an ImageFolder of generated PNGs and CSV tables, each trained in a run and in a small
sweep on the shared Ray; real noise without clean labels reaches the report, which says why memorisation is
absent."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.io import write_png

from proselflc.config import build_run_config
from proselflc.data import load
from proselflc.errors import ConfigError
from proselflc.training import Engine

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def _png_folder(root: Path, per_class: int, seed: int) -> Path:
    """root/<colour>/<i>.png: 32x32 images of a noisy colour, one folder per class."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.asarray(rgb)[:, None, None] + rng.normal(0, 40, (3, 32, 32)), 0, 255)
            write_png(torch.from_numpy(pixels.astype(np.uint8)), str(root / name / f"{i}.png"))
    return root


def _blob_table(n: int, seed: int, flip: float) -> pd.DataFrame:
    """Two numeric features in 3 well separated classes, a noisy label column and the true one."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 3, n)
    x = np.asarray([[0, 0], [4, 0], [0, 4]])[true] + rng.normal(0, 0.5, (n, 2))
    noisy = np.where(rng.random(n) < flip, (true + 1) % 3, true)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "label": [f"c{v}" for v in noisy],
                         "verified": [f"c{v}" for v in true]})


def test_an_image_folder_trains_with_its_clean_test_folder(tmp_path: Path) -> None:
    train = _png_folder(tmp_path / "train", 12, seed=0)
    test = _png_folder(tmp_path / "test", 4, seed=1)
    cfg = build_run_config({
        "data": {"name": "imagefolder", "root": str(train), "test_root": str(test), "image_size": 32,
                 "val_fraction": 0.25},
        "noise": {"kind": "none"}, "model": {"name": "cnn", "width": 8},
        "optim": {"lr": 0.05, "schedule": "constant"}, "train": {"epochs": 2, "batch_size": 9, "progress": False},
    })
    dataset = load(cfg.data)
    assert dataset.classes == ["blue", "green", "red"] and len(dataset) == 36 and len(dataset.test_labels) == 12
    history = Engine(cfg, dataset=dataset).run()
    assert len(history) == 2 and 0.0 <= history[-1]["test_accuracy"] <= 1.0
    assert math.isnan(history[-1]["noisy_fit"])  # folder labels as collected: which are noisy is unknown
    with pytest.raises(ConfigError, match="data.test_root = .*not a directory"):
        load(cfg.data.model_copy(update={"test_root": str(tmp_path / "nowhere")}))


def test_a_table_with_clean_labels_measures_memorisation(tmp_path: Path) -> None:
    _blob_table(400, seed=0, flip=0.3).to_csv(tmp_path / "blobs.csv", index=False)
    cfg = build_run_config({
        "data": {"name": "table", "root": str(tmp_path / "blobs.csv"), "clean_label_column": "verified"},
        "noise": {"kind": "none"}, "model": {"name": "mlp", "hidden": 16},
        "optim": {"lr": 0.1, "schedule": "constant"}, "train": {"epochs": 3, "batch_size": 32, "progress": False},
    })
    dataset = load(cfg.data)
    assert dataset.classes == ["c0", "c1", "c2"] and len(dataset) == 300 and len(dataset.test_labels) == 100
    noisy_share = float((dataset.train_labels != dataset.train_clean_labels).mean())
    assert 0.2 < noisy_share < 0.4
    engine = Engine(cfg, dataset=dataset)
    assert engine.is_noisy is not None and engine.is_noisy.float().mean().item() == pytest.approx(noisy_share)
    last = engine.run()[-1]
    assert not math.isnan(last["noisy_fit"]) and last["test_accuracy"] > 0.6
    with pytest.raises(ConfigError, match="data.label_column = 'tag': .* no such column; its columns: x1, x2"):
        load(cfg.data.model_copy(update={"label_column": "tag"}))
    with pytest.raises(ConfigError, match="already noisy; noise.kind 'symmetric' at rate 0.4"):
        Engine(build_run_config({**cfg.to_dict(), "noise": {"kind": "symmetric", "rate": 0.4}}), dataset=dataset)


def _sweep(name: str, data: dict[str, Any], model: dict[str, Any], storage: Path) -> dict[str, Any]:
    return {
        "name": name,
        "base": {"data": data, "model": model, "optim": {"lr": 0.05, "schedule": "constant"},
                 "train": {"epochs": 2, "batch_size": 16}},
        "noise": {"kind": "none", "rates": [0.0]},
        "methods": {"crossentropy": {"search": {"optim.lr": {"type": "loguniform", "low": 0.02, "high": 0.2}}}},
        "num_samples": 2, "scheduler": {"name": "fifo"}, "searcher": {"seed": 0}, "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent_trials": 1, "final_seeds": 1, "max_failures": 0, "storage_path": str(storage),
    }


@pytest.mark.ray
def test_an_image_folder_sweeps(ray_session: Any, tmp_path: Path) -> None:
    from proselflc.analysis import best_configs, load_sweep
    from proselflc.tuning import build_sweep_config, run_sweep

    data = {"name": "imagefolder", "root": str(_png_folder(tmp_path / "train", 8, 0)),
            "test_root": str(_png_folder(tmp_path / "test", 3, 1)), "image_size": 32, "val_fraction": 0.25}
    sweep_dir = run_sweep(build_sweep_config(_sweep("folder", data, {"name": "cnn", "width": 8}, tmp_path)),
                          log=lambda line: None)
    best = best_configs(load_sweep(sweep_dir)).iloc[0]
    assert best["study"] == "none-0/crossentropy" and best["final_n"] == 1
    assert 0.0 <= best["final_mean"] <= 1.0  # the final re-run's clean test accuracy


@pytest.mark.ray
def test_real_noise_without_clean_labels_reaches_the_report(ray_session: Any, tmp_path: Path) -> None:
    """A text table, its labels noisy and no clean ones anywhere: the sweep selects on noisy validation, and the
    report says that memorisation and the clean test need true labels this table does not have."""
    from proselflc.analysis import summary, write_report
    from proselflc.tuning import build_sweep_config, run_sweep

    rng = np.random.default_rng(0)
    words = {"pos": ["good", "great", "fine", "love"], "neg": ["bad", "awful", "poor", "hate"]}
    rows = []
    for _ in range(160):
        label = str(rng.choice(["pos", "neg"]))
        text = " ".join(rng.choice(words[label], 3))
        rows.append({"review": text, "label": label if rng.random() > 0.2 else {"pos": "neg", "neg": "pos"}[label]})
    pd.DataFrame(rows).to_csv(tmp_path / "reviews.csv", index=False)
    data = {"name": "table", "root": str(tmp_path / "reviews.csv"), "text_column": "review", "val_fraction": 0.25}
    sweep_dir = run_sweep(build_sweep_config(_sweep("reviews", data, {"name": "mlp", "hidden": 8}, tmp_path)),
                          log=lambda line: None)
    text = summary(sweep_dir)
    assert "dataset 'table' has no clean labels" in text
    report = write_report(sweep_dir, formats=["md"], figures=False)
    assert "dataset 'table' has no clean labels" in (tmp_path / "reviews" / "report" / "results.md").read_text()
    best = report.best.iloc[0]
    assert best["selected_score"] > 0.6 and math.isnan(best["final_mean"])  # selected on noisy val; no clean test
