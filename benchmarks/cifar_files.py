"""CIFAR-10 and CIFAR-100 in torchvision's on-disk pickle format, with random pixels: real loading code, no download.

No dataset can be fetched on the machines this project is tested on, so the paper recipes' benchmark and the
tests write this copy and read it back through the same loader that the real files go through (the format of
`torchvision.datasets.CIFAR10` and `CIFAR100`). Labels cover every class evenly; coarse labels follow CIFAR-100's own map.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from proselflc.noise import CIFAR100_FINE_TO_COARSE


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def write_cifar100(root: Path, n_train: int, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """cifar-100-python/{train,test,meta} pickles with the keys torchvision reads; returns the train split."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        rng.shuffle(fine)
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        _dump(folder / name, {
            "filenames": [f"{name}_{i}.png" for i in range(n)],
            "batch_label": f"{name} batch",
            "fine_labels": fine.tolist(),
            "coarse_labels": [CIFAR100_FINE_TO_COARSE[f] for f in fine],
            "data": pixels,
        })  # fmt: skip
        out[name] = (pixels, fine)
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"class{i:02d}" for i in range(100)],
            "coarse_label_names": [f"super{i:02d}" for i in range(20)],
        },
    )
    return out["train"]


def write_cifar10(root: Path, per_batch: int) -> None:
    """cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}, `per_batch` images in each batch file."""
    rng = np.random.default_rng(1)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(
            folder / name,
            {
                "data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                "labels": (np.arange(per_batch) % 10).tolist(),
                "batch_label": name,
            },
        )
    _dump(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})


def write_cifar_n_labels(path: Path, clean: np.ndarray, label_sets: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """A CIFAR-N label file in the authors' format: a torch-saved dict of int64 numpy arrays, `clean_label`
    plus one array per key of `label_sets` (e.g. 'aggre_label': 0.1), each with exactly that share of its
    labels moved to another class. Returns what it wrote."""
    import torch

    rng = np.random.default_rng(seed)
    clean = np.asarray(clean, dtype=np.int64)
    num_classes = int(clean.max()) + 1
    content = {"clean_label": clean.copy()}
    for key, rate in label_sets.items():
        noisy = clean.copy()
        chosen = rng.choice(clean.size, size=round(rate * clean.size), replace=False)
        noisy[chosen] = (clean[chosen] + rng.integers(1, num_classes, size=chosen.size)) % num_classes
        content[key] = noisy
    torch.save(content, path)
    return content
