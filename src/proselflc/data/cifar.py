"""CIFAR-10 / CIFAR-100 as uint8 tensors, augmented and normalised in batches on the training device.

The files are the Python pickles torchvision downloads (`cifar-10-batches-py/`, `cifar-100-python/`
under `data.root`); `data.download: true` lets torchvision fetch and checksum them. They are read
once into (N, 3, 32, 32) uint8 tensors (150 MB for CIFAR-100's train split), so the Engine keeps
the whole set on the GPU and a training batch is one index, one crop-and-flip and one
normalisation, with no PIL and no worker processes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F

from proselflc.data import pickles
from proselflc.data.base import DATASETS, Dataset
from proselflc.registry import Param

if TYPE_CHECKING:
    from proselflc.config import DataConfig


@dataclass(frozen=True)
class _Layout:
    """Where torchvision puts one CIFAR variant and how its pickles name things."""

    torchvision_class: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    names_key: str
    labels_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


LAYOUTS = {
    "cifar10": _Layout(
        "CIFAR10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        "label_names",
        "labels",
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _Layout(
        "CIFAR100",
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        "fine_label_names",
        "fine_labels",
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
}

#: Pixels of zero padding before the random 32x32 crop (the standard CIFAR augmentation).
PAD = 4


@dataclass
class CifarDataset(Dataset):
    """uint8 (N, 3, H, W) images; `prepare` crops, flips (rotates) and normalises a batch where it lives."""

    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    rotation_degrees: float = 0.0

    def prepare(self, x: torch.Tensor, *, augment: bool, generator: torch.Generator | None) -> torch.Tensor:
        if augment:
            x = random_crop_flip(x, PAD, generator)
            if self.rotation_degrees:
                x = random_rotate(x, self.rotation_degrees, generator)
        return normalize(x, self.mean, self.std)


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch back to its size, then a random horizontal flip.

    Offsets and flips are drawn from `generator` on `x`'s device, so a seeded run augments identically.
    """
    n, _, h, w = x.shape
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    max_dy, max_dx = padded.shape[2] - h, padded.shape[3] - w
    dy = torch.randint(0, max_dy + 1, (n,), device=device, generator=generator)
    dx = torch.randint(0, max_dx + 1, (n,), device=device, generator=generator)
    flip = torch.rand(n, device=device, generator=generator) < 0.5
    cols = torch.arange(w, device=device)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]  # (n, w): flip folded into the gather
    rows = torch.arange(h, device=device) + dy[:, None]  # (n, h)
    batch = torch.arange(n, device=device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_rotate(x: torch.Tensor, degrees: float, generator: torch.Generator | None) -> torch.Tensor:
    """Per-image rotation by an angle uniform in [-degrees, degrees] about the centre, nearest pixel, black fill.

    torchvision's `RandomRotation(degrees)` (the ProSelfLC code's CIFAR augmentation) for a whole batch in
    one `grid_sample`: same sign (positive is counter-clockwise), centre and fill as
    `torchvision.transforms.v2.functional.rotate` with NEAREST; returns float pixels in [0, 255].
    """
    n, _, h, w = x.shape
    angle = torch.deg2rad((torch.rand(n, device=x.device, generator=generator) * 2.0 - 1.0) * degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    # output -> input map in grid_sample's normalised coordinates (x right, y down, each in [-1, 1]).
    theta = torch.stack(
        [torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)], 1
    )
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [0, 255] -> float32 standardised per channel, in one fused multiply-add."""
    shift, scale = _affine(tuple(mean), tuple(std), x.device)
    return torch.addcmul(shift, x.float(), scale).contiguous()


@functools.cache
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, ...]:
    """(shift, scale): (x / 255 - mean) / std == shift + x * scale; made once per device, not per batch."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=device).view(1, -1, 1, 1)
    return shift, scale


def _unpickle(path: Path) -> Any:
    """A CIFAR batch as data: `pickles.load` builds only dicts, lists, strings, numbers and arrays."""
    return pickles.load(path)


def _entry(entry: Any, key: str, path: Path) -> Any:
    """`key` of `entry` (the pickle at `path`), or a ValueError naming the file and the missing key."""
    if not isinstance(entry, dict) or key not in entry:
        found = ", ".join(sorted(map(str, entry))) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(
            f"data.root: {str(path)!r} is not a CIFAR pickle as torchvision writes it: it lacks the key {key!r} "
            f"(found: {found or 'nothing'}). Replace the file with the original, or delete it and set data.download: true"
        )
    return entry[key]


def _read_split(folder: Path, files: tuple[str, ...], labels_key: str) -> tuple[torch.Tensor, np.ndarray]:
    images, labels = [], []
    for name in files:
        entry = _unpickle(folder / name)
        images.append(np.asarray(_entry(entry, "data", folder / name), dtype=np.uint8))
        labels.extend(_entry(entry, labels_key, folder / name))
    data = np.concatenate(images).reshape(-1, 3, 32, 32)
    return torch.from_numpy(np.ascontiguousarray(data)), np.asarray(labels, dtype=np.int64)


#: `rotation_degrees`: random rotation in [-d, d] degrees after crop and flip (torchvision's RandomRotation(d)).
ROTATION = {"rotation_degrees": Param(low=0.0, high=180.0, help="random rotation in [-d, d] degrees after crop and flip")}


# Decorators apply bottom-up: cifar10 is registered first.
@DATASETS.register("cifar100", params=ROTATION)
@DATASETS.register("cifar10", params=ROTATION)
def load(cfg: DataConfig, rotation_degrees: float = 0.0) -> Dataset:
    """CIFAR-10 or CIFAR-100 (`cfg.name`) from `cfg.root`, downloading there first when `cfg.download`."""
    layout = LAYOUTS[cfg.name]
    root = Path(cfg.root).expanduser()
    if cfg.download:
        from torchvision import datasets as tv_datasets

        try:
            getattr(tv_datasets, layout.torchvision_class)(str(root), train=True, download=True)
        except (URLError, ConnectionError, TimeoutError) as exc:
            raise ValueError(
                f"data.download: could not fetch {cfg.name} ({getattr(exc, 'reason', exc)}): this machine seems to "
                f"have no network. Put {layout.folder}/ under data.root ({str(root)!r}) by hand and set "
                "data.download: false"
            ) from None
    folder = root / layout.folder
    expected = (*layout.train_files, layout.test_file, layout.meta_file)
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"data.root: {str(root)!r} has no complete {cfg.name} copy "
            f"({folder.name}/ lacks {', '.join(missing)}); set data.download: true to fetch it with "
            f"torchvision, or point data.root at the directory holding {folder.name}/"
        )
    train_x, train_y = _read_split(folder, layout.train_files, layout.labels_key)
    test_x, test_y = _read_split(folder, (layout.test_file,), layout.labels_key)
    meta = folder / layout.meta_file
    classes = list(_entry(_unpickle(meta), layout.names_key, meta))
    return CifarDataset(
        name=cfg.name,
        train_inputs=train_x,
        train_labels=train_y,
        test_inputs=test_x,
        test_labels=test_y,
        num_classes=layout.num_classes,
        input_shape=(3, 32, 32),
        classes=classes,
        mean=layout.mean,
        std=layout.std,
        rotation_degrees=rotation_degrees,
    )
