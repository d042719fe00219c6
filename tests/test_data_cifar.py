"""CIFAR loaders on a tiny copy in torchvision's on-disk format, on-device augmentation, end-to-end runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks.cifar_files import write_cifar10, write_cifar100

from proselflc import data
from proselflc.config import DataConfig, build_run_config, load_run_config
from proselflc.data.cifar import CifarDataset, normalize, random_crop_flip
from proselflc.noise import CIFAR100_FINE_TO_COARSE
from proselflc.training import Engine

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_cifar100_reads_the_pickles_into_uint8_tensors(tmp_path):
    pixels, fine = write_cifar100(tmp_path, n_train=200, n_test=100)
    ds = data.load(DataConfig(name="cifar100", root=tmp_path))
    assert isinstance(ds, CifarDataset) and ds.num_classes == 100 and ds.input_shape == (3, 32, 32)
    assert ds.train_inputs.dtype == torch.uint8 and ds.train_inputs.shape == (200, 3, 32, 32)
    assert ds.test_inputs.shape == (100, 3, 32, 32)
    assert torch.equal(ds.train_inputs[7], torch.from_numpy(pixels[7].reshape(3, 32, 32)))
    assert np.array_equal(ds.train_labels, fine)
    assert ds.classes[:2] == ["class00", "class01"] and not ds.labels_are_noisy
    assert len(data.load(DataConfig(name="cifar100", root=tmp_path, limit=50))) == 50


def test_cifar10_reads_five_training_batches(tmp_path):
    write_cifar10(tmp_path, per_batch=20)
    ds = data.load(DataConfig(name="cifar10", root=tmp_path))
    assert ds.num_classes == 10 and len(ds) == 100 and len(ds.test_labels) == 20 and ds.classes[3] == "c3"


def test_missing_files_name_the_root_and_the_download_option(tmp_path):
    with pytest.raises(ValueError, match=r"data\.root.*cifar-100-python.*data\.download: true"):
        data.load(DataConfig(name="cifar100", root=tmp_path))


def test_augmentation_is_a_seeded_crop_of_the_padded_image_with_flips():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).reshape(2, 3, 32, 32).remainder(251).to(torch.uint8)
    x = x.repeat(64, 1, 1, 1)
    out = random_crop_flip(x, 4, torch.Generator().manual_seed(0))
    again = random_crop_flip(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8 and torch.equal(out, again)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flipped = 0
    for i in range(len(x)):
        windows = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        if any(torch.equal(out[i], w) for w in windows):
            continue
        assert any(torch.equal(out[i], w.flip(-1)) for w in windows), f"image {i} is not a (flipped) crop"
        flipped += 1
    assert 0 < flipped < len(x), "about half the images are flipped"
    assert not torch.equal(out, random_crop_flip(x, 4, torch.Generator().manual_seed(1)))


def test_prepare_normalises_to_float_and_only_augments_when_asked(tmp_path):
    write_cifar100(tmp_path, n_train=100, n_test=100)
    ds = data.load(DataConfig(name="cifar100", root=tmp_path))
    index = torch.arange(100)
    plain = ds.batch("train", index, augment=False)
    assert plain.dtype == torch.float32 and plain.shape == (100, 3, 32, 32)
    mean, std = torch.tensor(ds.mean).view(1, 3, 1, 1), torch.tensor(ds.std).view(1, 3, 1, 1)
    torch.testing.assert_close(plain, (ds.train_inputs.float() / 255 - mean) / std)
    assert torch.equal(
        plain, ds.batch("train", index, augment=False, generator=torch.Generator().manual_seed(5))
    )
    augmented = ds.batch("train", index, augment=True, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(augmented, plain)
    zero_pixel = normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8), ds.mean, ds.std)
    assert (augmented == zero_pixel).any(), "padding shows up as black (zero) pixels"


def test_dataset_pickles_for_ray_object_store(tmp_path):
    write_cifar100(tmp_path, n_train=100, n_test=100)
    ds = data.load(DataConfig(name="cifar100", root=tmp_path))
    back = pickle.loads(pickle.dumps(ds))
    assert (
        isinstance(back, CifarDataset)
        and torch.equal(back.train_inputs, ds.train_inputs)
        and back.std == ds.std
    )


def test_cifar100_superclass_noise_end_to_end(tmp_path):
    write_cifar100(tmp_path, n_train=400, n_test=100)
    cfg = build_run_config({
        "name": "cifar100-superclass",
        "data": {"name": "cifar100", "root": str(tmp_path), "val_fraction": 0.1},
        "noise": {"kind": "cifar100_superclass", "rate": 0.5},
        "model": {"name": "cnn", "width": 8},
        "loss": {"name": "proselflc", "exp_base": 8, "transit_time_ratio": 0.3},
        "optim": {"lr": 0.05, "warmup_epochs": 1},
        "train": {"epochs": 2, "batch_size": 64, "seed": 0, "progress": False, "threads": 1, "device": "cpu"},
    })  # fmt: skip
    engine = Engine(cfg)
    history = engine.run()
    assert [row["epoch"] for row in history] == [1, 2] and not history[-1]["diverged"]
    flipped = engine.noisy_labels != engine.true_labels
    assert torch.equal(flipped, engine.is_noisy)
    coarse = torch.tensor(CIFAR100_FINE_TO_COARSE)
    assert torch.equal(coarse[engine.noisy_labels], coarse[engine.true_labels]), (
        "flips stay within a superclass"
    )
    assert flipped.sum().item() == 400 * 0.5 * 40 / 100, "half of the 4 images of each of 40 chosen classes"
    for key in ("val_accuracy", "test_accuracy", "noisy_fit", "noisy_corrected", "clean_fit"):
        assert 0.0 <= history[-1][key] <= 1.0
    assert 0.0 < history[-1]["mean_epsilon"] < 1.0


@pytest.mark.parametrize(
    "name, model", [("cifar100_resnet18", "resnet18"), ("cifar100_shufflenetv2", "shufflenetv2")]
)
def test_cifar100_run_configs_follow_the_papers_schedule(name, model, tmp_path):
    write_cifar100(tmp_path, n_train=100, n_test=100)
    cfg = load_run_config(CONFIGS / f"{name}.yaml", [f"data.root={tmp_path}", "data.download=false"])
    assert cfg.model.name == model and (cfg.noise.kind, cfg.noise.rate) == ("symmetric", 0.4)
    assert (cfg.optim.momentum, cfg.train.batch_size, cfg.train.epochs) == (0.9, 128, 100)
    # ProSelfLC-AT's 200 epochs halved: 8 warm-up epochs, then its post-warm-up milestones 60/120/160 halved.
    assert cfg.optim.schedule == "multistep" and cfg.optim.warmup_epochs == 8
    assert cfg.optim.milestones == [8 + 30, 8 + 60, 8 + 80] and cfg.optim.gamma == 0.2
    assert cfg.loss.name == "proselflc" and data.load(cfg.data).num_classes == 100
