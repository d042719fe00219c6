"""Clothing1M and Food-101N loaders on tiny generated trees in their published layouts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import ImageReadMode, decode_image, write_jpeg
from torchvision.transforms.v2 import functional as TF

from proselflc import data
from proselflc.config import DataConfig, build_run_config, load_run_config
from proselflc.data.cifar import normalize
from proselflc.data.webly import IMAGENET_MEAN, IMAGENET_STD, ImageFileDataset
from proselflc.training import Engine

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# torchvision 0.29 deprecates torchvision.io's image codecs (for TorchCodec); the loaders use them by design.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)


def _jpeg(path: Path, seed: int, grey: bool = False) -> None:
    """A random photo-sized JPEG, landscape or portrait, sometimes single-channel (as in the real sets)."""
    g = torch.Generator().manual_seed(seed)
    h, w = (48, 64) if seed % 2 else (70, 40)
    image = torch.randint(0, 256, (1 if grey else 3, h, w), dtype=torch.uint8, generator=g)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jpeg(image, str(path))


def write_clothing1m(root: Path, flat: bool = False) -> dict[str, list]:
    notes = root if flat else root / "annotations"
    notes.mkdir(parents=True, exist_ok=True)
    train = [f"images/{i % 10}/{i:02d}/train{i}.jpg" for i in range(30)]
    test = [f"images/{i % 10}/{i:02d}/test{i}.jpg" for i in range(12)]
    for i, key in enumerate(train + test):
        _jpeg(root / key, i, grey=i == 3)
    noisy = {k: (i * 3) % 14 for i, k in enumerate(train)}
    clean = {k: i % 14 for i, k in enumerate(test)}
    (notes / "noisy_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in noisy.items()))
    (notes / "clean_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in clean.items()))
    (notes / "noisy_train_key_list.txt").write_text("\n".join(train) + "\n")
    (notes / "clean_test_key_list.txt").write_text("\n".join(test) + "\n")
    if not flat:
        names = ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker", "Jacket",
                 "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]  # fmt: skip
        (notes / "category_names_eng.txt").write_text("\n".join(names) + "\n")
    return {
        "train": train,
        "train_y": [noisy[k] for k in train],
        "test": test,
        "test_y": [clean[k] for k in test],
    }


def write_food101n(root: Path) -> list[str]:
    classes = ["apple_pie", "baby_back_ribs", "baklava"]
    meta = root / "Food-101N_release" / "meta"
    meta.mkdir(parents=True)
    (meta / "classes.txt").write_text("class_name\n" + "\n".join(classes) + "\n")
    train = [f"{classes[i % 3]}/{i:032x}.jpg" for i in range(12)]
    (meta / "imagelist.tsv").write_text("class_name/key\n" + "\n".join(train) + "\n")
    (meta / "verified_train.tsv").write_text("class_name/key\tverification_label\n" + f"{train[0]}\t1\n")
    for i, rel in enumerate(train):
        _jpeg(root / "Food-101N_release" / "images" / rel, i)
    food = root / "food-101"
    (food / "meta").mkdir(parents=True)
    (food / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    test = [f"{classes[i % 3]}/{100 + i}" for i in range(6)]
    (food / "meta" / "test.txt").write_text("\n".join(test) + "\n")
    for i, rel in enumerate(test):
        _jpeg(food / "images" / f"{rel}.jpg", 50 + i)
    return classes


def test_clothing1m_reads_keys_and_noisy_and_clean_labels(tmp_path):
    truth = write_clothing1m(tmp_path)
    ds = data.load(DataConfig(name="clothing1m", root=tmp_path, image_size=32))
    assert isinstance(ds, ImageFileDataset) and ds.labels_are_noisy
    assert ds.num_classes == 14 and ds.classes[0] == "T-Shirt" and ds.input_shape == (3, 32, 32)
    assert [k.decode() for k in ds.train_inputs] == truth["train"] and list(ds.train_labels) == truth[
        "train_y"
    ]
    assert list(ds.test_labels) == truth["test_y"]
    back = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(back.train_inputs, ds.train_inputs) and back.root == ds.root


def test_clothing1m_flat_layout_without_annotations_folder(tmp_path):
    truth = write_clothing1m(tmp_path, flat=True)
    ds = data.load(DataConfig(name="clothing1m", root=tmp_path, image_size=32))
    assert len(ds) == 30 and list(ds.test_labels) == truth["test_y"] and ds.classes[-1] == "Underwear"


def test_eval_batch_is_the_resized_centre_crop_and_train_batches_are_seeded(tmp_path):
    truth = write_clothing1m(tmp_path)
    ds = data.load(DataConfig(name="clothing1m", root=tmp_path, image_size=32)).to(torch.device("cpu"))
    index = torch.tensor([3, 0, 7])
    x = ds.batch("train", index, augment=False)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    image = TF.resize(
        decode_image(str(tmp_path / truth["train"][0]), mode=ImageReadMode.RGB), 37, antialias=True
    )
    expected = TF.center_crop(image, [32, 32])
    torch.testing.assert_close(x[1], normalize(expected[None], IMAGENET_MEAN, IMAGENET_STD)[0])

    many = torch.arange(30)
    a = ds.batch("train", many, augment=True, generator=torch.Generator().manual_seed(0))
    b = ds.batch("train", many, augment=True, generator=torch.Generator().manual_seed(0))
    c = ds.batch("train", many, augment=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, ds.batch("train", many, augment=False))
    assert ds.batch("test", torch.arange(12)).shape == (12, 3, 32, 32)


def test_food101n_trains_on_imagelist_and_tests_on_food101(tmp_path):
    classes = write_food101n(tmp_path)
    ds = data.load(DataConfig(name="food101n", root=tmp_path, image_size=32))
    assert ds.classes == classes and ds.num_classes == 3 and ds.labels_are_noisy
    assert len(ds) == 12 and list(ds.train_labels) == [i % 3 for i in range(12)]
    assert list(ds.test_labels) == [i % 3 for i in range(6)]
    assert ds.train_inputs[1].decode().startswith("Food-101N_release/images/baby_back_ribs/")
    assert ds.test_inputs[0].decode() == "food-101/images/apple_pie/100.jpg"
    assert ds.batch("test", torch.arange(6)).shape == (6, 3, 32, 32)


def test_missing_files_and_bad_labels_are_reported(tmp_path):
    with pytest.raises(ValueError, match="noisy_train_key_list.txt"):
        data.load(DataConfig(name="clothing1m", root=tmp_path))
    write_clothing1m(tmp_path)
    (tmp_path / "images/0/00/train0.jpg").unlink()
    with pytest.raises(ValueError, match="training image .*train0.jpg' does not exist"):
        data.load(DataConfig(name="clothing1m", root=tmp_path))
    with pytest.raises(ValueError, match="Food-101N_release/meta/classes.txt"):
        data.load(DataConfig(name="food101n", root=tmp_path))
    food = tmp_path / "food"
    write_food101n(food)
    (food / "food-101/meta/test.txt").write_text("pizza/1\n")
    with pytest.raises(ValueError, match=r"class folder\(s\) \['pizza'\]"):
        data.load(DataConfig(name="food101n", root=food))


def test_engine_trains_on_real_noisy_labels_without_synthetic_noise(tmp_path):
    write_clothing1m(tmp_path)
    cfg = build_run_config({
        "name": "clothing1m-smoke",
        "data": {"name": "clothing1m", "root": str(tmp_path), "image_size": 32, "val_fraction": 0.2},
        "model": {"name": "cnn", "width": 4},
        "optim": {"lr": 0.01},
        "train": {"epochs": 1, "batch_size": 8, "seed": 0, "progress": False, "threads": 1, "device": "cpu"},
    })  # fmt: skip
    engine = Engine(cfg)
    assert engine.is_noisy is None and torch.equal(engine.noisy_labels, engine.true_labels)
    row = engine.run()[-1]
    assert not row["diverged"] and 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["val_accuracy"] <= 1.0


def test_run_configs_read_the_published_layouts(tmp_path):
    write_clothing1m(tmp_path / "clothing")
    write_food101n(tmp_path / "food")
    for name, root, classes in (("clothing1m", "clothing", 14), ("food101n", "food", 3)):
        cfg = load_run_config(CONFIGS / f"{name}.yaml", [f"data.root={tmp_path / root}"])
        assert cfg.data.name == name and cfg.noise.rate == 0 and cfg.model.name == "resnet50"
        assert cfg.model.kwargs["pretrained_path"] and cfg.data.image_size == 224
        ds = data.load(cfg.data)
        assert ds.num_classes == classes and ds.labels_are_noisy
