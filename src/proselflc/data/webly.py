"""Clothing1M and Food-101N: web images with real-world noisy training labels and a clean test set.

Too big to hold in memory (1M and 310k JPEGs), so the dataset keeps relative file paths and
`batch()` decodes just the requested images with `torchvision.io` on a thread pool, applying the
standard ImageNet-style pipeline: shorter side resized to `image_size * 256 / 224`, then a random
`image_size` crop plus horizontal flip for training, or the centre crop for evaluation. The crop
offsets and flips are drawn from the Engine's generator, so a seeded run sees the same crops.

Layouts (`data.root` is the directory that holds them):

Clothing1M (Xiao et al., 2015), as released::

    images/<d>/<dd>/<key>.jpg
    annotations/noisy_label_kv.txt     "images/0/61/x.jpg 5" per line (the flat layout, with these
    annotations/clean_label_kv.txt      files directly in root, is read too)
    annotations/noisy_train_key_list.txt
    annotations/clean_test_key_list.txt
    annotations/category_names_eng.txt  (optional; 14 names)

  Training: the 1M noisy_train keys with their noisy labels; test: the clean_test keys with clean labels.

Food-101N (Lee et al., 2018) with Food-101 (Bossard et al., 2014) for the clean test set::

    Food-101N_release/meta/classes.txt      header "class_name", then the 101 classes
    Food-101N_release/meta/imagelist.tsv    header "class_name/key", then "<class>/<file>.jpg"
    Food-101N_release/images/<class>/<file>.jpg
    food-101/meta/test.txt                  "<class>/<id>" per line
    food-101/images/<class>/<id>.jpg

  Training: all 310k imagelist.tsv images labelled by their (noisy) class folder; test: Food-101's
  25,250 test images, the protocol of CleanNet and its successors. The verified_train/val.tsv
  human verification flags are not used: no clean labels enter training or model selection.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from proselflc.data.base import DATASETS, Dataset, Split
from proselflc.data.cifar import normalize
from proselflc.registry import Param

if TYPE_CHECKING:
    from proselflc.config import DataConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLOTHING1M_CLASSES = (
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
    "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
)  # fmt: skip
#: `image_size`, the side of the training crop, of every loader of image files.
IMAGE_SIZE = Param(low=32, help="side of the square crop")
#: Decoding threads per batch (JPEG decoding and resizing release the GIL).
MAX_WORKERS = 16


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="proselflc-decode")


@dataclass
class ImageFileDataset(Dataset):
    """Train/test inputs are arrays of image paths (bytes, relative to `root`), decoded per batch."""

    root: str = "."
    image_size: int = 224
    device: str = "cpu"

    @property
    def resize(self) -> int:
        """Shorter side before cropping: 256 for the usual 224 crop."""
        return round(self.image_size * 256 / 224)

    def to(self, device: torch.device) -> ImageFileDataset:
        """Inputs stay on disk; remember where decoded batches should go."""
        return replace(self, device=str(device))

    def batch(
        self,
        split: Split,
        index: torch.Tensor,
        *,
        augment: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        paths = self.train_inputs if split == "train" else self.test_inputs
        idx = index.tolist()
        if augment:
            gen_device = generator.device if generator is not None else torch.device("cpu")
            draws = torch.rand(len(idx), 3, generator=generator, device=gen_device).tolist()
        else:
            draws = [None] * len(idx)
        jobs = [(os.path.join(self.root, paths[i].decode()), d) for i, d in zip(idx, draws)]
        images = list(_pool(min(MAX_WORKERS, os.cpu_count() or 1)).map(lambda job: self._read(*job), jobs))
        x = torch.stack(images).to(self.device, non_blocking=True)
        return self.prepare(x, augment=augment, generator=generator)

    def _read(self, path: str, draw: list[float] | None) -> torch.Tensor:
        """Decode to RGB uint8, resize the shorter side, crop `image_size` (random + flip, or centre)."""
        from torchvision.io import ImageReadMode, decode_image
        from torchvision.transforms.v2 import functional as TF

        image = TF.resize(decode_image(path, mode=ImageReadMode.RGB), self.resize, antialias=True)
        h, w = image.shape[-2:]
        size = self.image_size
        if draw is None:
            top, left = (h - size) // 2, (w - size) // 2
        else:
            top, left = int(draw[0] * (h - size + 1)), int(draw[1] * (w - size + 1))
        image = image[:, top : top + size, left : left + size]
        return image.flip(-1) if draw is not None and draw[2] < 0.5 else image

    def prepare(self, x: torch.Tensor, *, augment: bool, generator: torch.Generator | None) -> torch.Tensor:
        return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ValueError(f"data.root: expected the list file {str(path)!r}, which does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _key_labels(path: Path) -> dict[str, int]:
    out = {}
    for line in _lines(path):
        key, label = line.rsplit(maxsplit=1)
        out[key] = int(label)
    return out


def _check_first_image(root: Path, keys: np.ndarray, what: str) -> None:
    """One stat instead of a million: catches a wrong data.root before training starts."""
    first = root / keys[0].decode()
    if not first.is_file():
        raise ValueError(
            f"data.root: {what} image {str(first)!r} does not exist; is data.root the dataset directory?"
        )


def _labelled(keys: list[str], labels: dict[str, int], source: Path) -> np.ndarray:
    missing = [k for k in keys if k not in labels]
    if missing:
        raise ValueError(
            f"{str(source)!r} has no label for {len(missing)} listed image(s), e.g. {missing[0]!r}"
        )
    return np.asarray([labels[k] for k in keys], dtype=np.int64)


@DATASETS.register("clothing1m", real_noise=True, params={"image_size": IMAGE_SIZE})
def load_clothing1m(cfg: DataConfig, image_size: int = 224) -> ImageFileDataset:
    """Clothing1M's 1M web images with their noisy labels for training, its clean test keys for the test set."""
    root = Path(cfg.root).expanduser()
    notes = root / "annotations" if (root / "annotations").is_dir() else root
    train_keys = _lines(notes / "noisy_train_key_list.txt")
    test_keys = _lines(notes / "clean_test_key_list.txt")
    train_y = _labelled(train_keys, _key_labels(notes / "noisy_label_kv.txt"), notes / "noisy_label_kv.txt")
    test_y = _labelled(test_keys, _key_labels(notes / "clean_label_kv.txt"), notes / "clean_label_kv.txt")
    names_file = notes / "category_names_eng.txt"
    classes = _lines(names_file) if names_file.is_file() else list(CLOTHING1M_CLASSES)
    if len(classes) != len(CLOTHING1M_CLASSES):
        raise ValueError(f"{str(names_file)!r} lists {len(classes)} categories; Clothing1M has 14")
    return _image_dataset(cfg, root, train_keys, train_y, test_keys, test_y, classes, image_size)


@DATASETS.register("food101n", real_noise=True, params={"image_size": IMAGE_SIZE})
def load_food101n(cfg: DataConfig, image_size: int = 224) -> ImageFileDataset:
    """Food-101N's 310k web images labelled by their class folder for training, Food-101's test set for the test."""
    root = Path(cfg.root).expanduser()
    meta = root / "Food-101N_release" / "meta"
    classes = [c for c in _lines(meta / "classes.txt") if c != "class_name"]
    lookup = {c: i for i, c in enumerate(classes)}
    train_rel = [line for line in _lines(meta / "imagelist.tsv") if line != "class_name/key"]
    test_rel = _lines(root / "food-101" / "meta" / "test.txt")
    train_y = _class_of(train_rel, lookup, meta / "imagelist.tsv")
    test_y = _class_of(test_rel, lookup, root / "food-101" / "meta" / "test.txt")
    train_keys = [f"Food-101N_release/images/{r}" for r in train_rel]
    test_keys = [f"food-101/images/{r}.jpg" for r in test_rel]
    return _image_dataset(cfg, root, train_keys, train_y, test_keys, test_y, classes, image_size)


def _class_of(relative: list[str], lookup: dict[str, int], source: Path) -> np.ndarray:
    folders = [r.split("/", 1)[0] for r in relative]
    unknown = sorted(set(folders) - set(lookup))
    if unknown:
        raise ValueError(
            f"{str(source)!r} uses class folder(s) {unknown[:3]} not in Food-101N's meta/classes.txt"
        )
    return np.asarray([lookup[f] for f in folders], dtype=np.int64)


def _image_dataset(
    cfg: DataConfig,
    root: Path,
    train_keys: list[str],
    train_y: np.ndarray,
    test_keys: list[str],
    test_y: np.ndarray,
    classes: list[str],
    image_size: int,
) -> ImageFileDataset:
    if not train_keys or not test_keys:
        raise ValueError(
            f"data.root: {str(root)!r} lists {len(train_keys)} training and {len(test_keys)} test images"
        )
    for split, labels in (("training", train_y), ("test", test_y)):
        if labels.min() < 0 or labels.max() >= len(classes):
            raise ValueError(
                f"data.root: {split} labels must lie in [0, {len(classes)}); "
                f"found {labels.min()}..{labels.max()}"
            )
    train = np.asarray([k.encode() for k in train_keys])
    test = np.asarray([k.encode() for k in test_keys])
    _check_first_image(root, train, "training")
    _check_first_image(root, test, "test")
    return ImageFileDataset(
        name=cfg.name,
        train_inputs=train,
        train_labels=train_y,
        test_inputs=test,
        test_labels=test_y,
        num_classes=len(classes),
        input_shape=(3, image_size, image_size),
        classes=classes,
        labels_are_noisy=True,
        root=str(root),
        image_size=image_size,
    )

