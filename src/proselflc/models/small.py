"""Small networks for the embedded digits data: fast enough to tune hundreds of trials on a laptop."""

from __future__ import annotations

import math

from torch import nn

from proselflc.models.base import MODELS
from proselflc.registry import Param

#: A width, a count of units or layers: a layer of zero units trains a network that cannot learn.
AT_LEAST_ONE = Param(low=1)


@MODELS.register("mlp", params={"hidden": AT_LEAST_ONE, "depth": Param(low=0),
                                "dropout": Param(low=0.0, high=1.0, high_open=True)})
def mlp(
    num_classes: int, input_shape: tuple[int, ...], hidden: int = 128, depth: int = 2, dropout: float = 0.0
) -> nn.Module:
    """A ReLU MLP over the flattened input."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@MODELS.register("cnn", params={"width": AT_LEAST_ONE})
def cnn(num_classes: int, input_shape: tuple[int, ...], width: int = 32) -> nn.Module:
    """Two conv-BN-ReLU blocks with pooling and a linear head, for small images such as 8x8 digits."""
    channels = input_shape[0] if input_shape else 1
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )
