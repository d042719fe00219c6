"""A folder of your own images in torchvision's ImageFolder layout: `data.root/<class>/<image>`, one folder per
class, the folder names are the labels. The clean test set is a second folder with the same class folders
(`data.test_root`); without one, the run has no test metrics.

    data: {name: imagefolder, root: data/train, test_root: data/test, image_size: 64}
    noise: {kind: none}          # the folders hold the labels as collected: real noise, used as given

`labels: clean` says the folders are correct, so synthetic noise (`noise.kind: symmetric`, ...) may be added.
Images are decoded per batch on a thread pool as Clothing1M's are (shorter side resized, a random
`image_size` crop and flip for training, the centre crop for evaluation, ImageNet normalisation), so a folder
of any size trains without being held in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from proselflc.data.base import DATASETS
from proselflc.data.webly import IMAGE_SIZE, ImageFileDataset
from proselflc.errors import ConfigError
from proselflc.registry import Param

if TYPE_CHECKING:
    from proselflc.config import DataConfig

#: The image files torchvision.io decodes.
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def _images(root: Path, classes: list[str], field: str) -> tuple[list[str], np.ndarray]:
    """(absolute paths, class indices) of every image under `root/<class>/`, sorted as ImageFolder sorts them."""
    from torchvision.datasets.folder import find_classes, make_dataset

    if not root.is_dir():
        raise ConfigError(f"{field} = {str(root)!r}: not a directory (expected one sub-folder per class)")
    found, _ = find_classes(str(root))
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ConfigError(
            f"{field} = {str(root)!r} has class folder(s) {unknown[:3]} that data.root's training folder does not have"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    samples = make_dataset(str(root), {c: lookup[c] for c in found}, extensions=EXTENSIONS, allow_empty=True)
    return [path for path, _ in samples], np.asarray([label for _, label in samples], dtype=np.int64)


@DATASETS.register("imagefolder", params={"labels": Param(choices=("noisy", "clean")), "image_size": IMAGE_SIZE})
def load(
    cfg: DataConfig, test_root: str | None = None, labels: str = "noisy", image_size: int = 224
) -> ImageFileDataset:
    """Training images from `data.root`, clean test images from `data.test_root`, classes from the folder names."""
    from torchvision.datasets.folder import find_classes

    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root = {str(root)!r}: not a directory (expected one sub-folder per class)")
    classes, _ = find_classes(str(root))
    if len(classes) < 2:
        raise ConfigError(f"data.root = {str(root)!r} has {len(classes)} class folder(s); at least 2 are needed")
    train_paths, train_y = _images(root, classes, "data.root")
    if len(train_paths) < 2:
        raise ConfigError(f"data.root = {str(root)!r} holds {len(train_paths)} image(s) ({', '.join(EXTENSIONS)})")
    test_paths, test_y = (
        _images(Path(test_root).expanduser(), classes, "data.test_root") if test_root else ([], np.zeros(0))
    )
    return ImageFileDataset(
        name=cfg.name,
        train_inputs=np.asarray([p.encode() for p in train_paths]),
        train_labels=train_y,
        test_inputs=np.asarray([p.encode() for p in test_paths], dtype=bytes),
        test_labels=test_y,
        num_classes=len(classes),
        input_shape=(3, image_size, image_size),
        classes=classes,
        labels_are_noisy=labels == "noisy",
        root="",
        image_size=image_size,
    )
