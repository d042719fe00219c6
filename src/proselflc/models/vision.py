"""Image classifiers: torchvision's ResNet/ShuffleNetV2 in CIFAR variants, PreAct ResNet-18, ResNet-50.

The CIFAR variants keep torchvision's classes and only swap the stem (3x3 stride-1 convolution, no
max-pool), because the ImageNet stem would shrink a 32x32 image to 8x8 before the first block.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from proselflc.models.base import MODELS
from proselflc.models.small import AT_LEAST_ONE
from proselflc.registry import Param

#: A width multiplier: any positive factor.
POSITIVE = Param(low=0.0, low_open=True)

#: ShuffleNetV2 width multiplier -> torchvision constructor name (torchvision is imported when building).
_SHUFFLENET_WIDTHS = {
    0.5: "shufflenet_v2_x0_5",
    1.0: "shufflenet_v2_x1_0",
    1.5: "shufflenet_v2_x1_5",
    2.0: "shufflenet_v2_x2_0",
}


def _channels(input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (channels, height, width) for an image model, got {input_shape}"
        )
    return input_shape[0]


@MODELS.register("resnet18")
def resnet18(num_classes: int, input_shape: tuple[int, ...] = (3, 32, 32)) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: conv1 3x3 stride 1, max-pool removed."""
    from torchvision import models as tvm

    model = tvm.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(_channels(input_shape), 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@MODELS.register("shufflenetv2", params={"width": POSITIVE})
def shufflenetv2(
    num_classes: int, input_shape: tuple[int, ...] = (3, 32, 32), width: float = 1.0
) -> nn.Module:
    """torchvision's ShuffleNetV2 (width 0.5/1.0/1.5/2.0) with a 3x3 stride-1 stem and no max-pool."""
    if width not in _SHUFFLENET_WIDTHS:
        raise ValueError(f"model.width: {width!r} is not a ShuffleNetV2 width; allowed: 0.5, 1.0, 1.5, 2.0")
    from torchvision import models as tvm

    model = getattr(tvm, _SHUFFLENET_WIDTHS[width])(num_classes=num_classes)
    stem_out = model.conv1[0].out_channels
    model.conv1 = nn.Sequential(
        nn.Conv2d(_channels(input_shape), stem_out, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(stem_out),
        nn.ReLU(inplace=True),
    )
    model.maxpool = nn.Identity()
    return model


#: ShuffleNetV2 width multiplier -> output channels of stages 2, 3, 4 and conv5 (Ma et al., Table 5).
_SHUFFLE_CHANNELS = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups),
        nn.BatchNorm2d(out_ch),
    ]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class _ShuffleUnit(nn.Module):
    """The ProSelfLC code's ShuffleNetV2 unit: biased convolutions; stride 1 and equal widths split the channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.split = stride == 1 and in_ch == out_ch
        if self.split:
            half = in_ch // 2
            self.shortcut = nn.Sequential()
            self.residual = nn.Sequential(
                *_conv_bn(half, half, 1), *_conv_bn(half, half, 3, stride, groups=half, relu=False),
                *_conv_bn(half, half, 1),
            )
        else:
            half = out_ch // 2
            self.residual = nn.Sequential(
                *_conv_bn(in_ch, in_ch, 1), *_conv_bn(in_ch, in_ch, 3, stride, groups=in_ch, relu=False),
                *_conv_bn(in_ch, half, 1),
            )
            self.shortcut = nn.Sequential(
                *_conv_bn(in_ch, in_ch, 3, stride, groups=in_ch, relu=False), *_conv_bn(in_ch, half, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, residual = x.chunk(2, dim=1) if self.split else (x, x)
        out = torch.cat([self.shortcut(shortcut), self.residual(residual)], dim=1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle, 2 groups


class ShuffleNetV2Cifar(nn.Module):
    """ShuffleNetV2 as the ProSelfLC code defines it for CIFAR (`slices/networks/shufflenetv2.py`).

    Unlike torchvision's: a biased 3x3 stride-1 stem with BatchNorm and no ReLU, no max-pool, biased
    convolutions throughout, 3 + 7 + 3 repeated units after each stage's stride-2 unit (4/8/4 units),
    and a stride-2 unit whose shortcut branch is depthwise-BN-pointwise-BN-ReLU on all input channels.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        c2, c3, c4, c5 = _SHUFFLE_CHANNELS[width]
        self.pre = nn.Sequential(*_conv_bn(in_channels, 24, 3, relu=False))
        self.stage2 = self._stage(24, c2, 3)
        self.stage3 = self._stage(c2, c3, 7)
        self.stage4 = self._stage(c3, c4, 3)
        self.conv5 = nn.Sequential(*_conv_bn(c4, c5, 1))
        self.fc = nn.Linear(c5, num_classes)

    @staticmethod
    def _stage(in_ch: int, out_ch: int, repeat: int) -> nn.Sequential:
        return nn.Sequential(_ShuffleUnit(in_ch, out_ch, 2), *(_ShuffleUnit(out_ch, out_ch, 1) for _ in range(repeat)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stage4(self.stage3(self.stage2(self.pre(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@MODELS.register("shufflenetv2_proselflc", params={"width": POSITIVE})
def shufflenetv2_proselflc(
    num_classes: int, input_shape: tuple[int, ...] = (3, 32, 32), width: float = 1.0
) -> nn.Module:
    """The ProSelfLC papers' CIFAR ShuffleNetV2 (their code builds width 1.0; 0.5/1.5/2.0 as in their class)."""
    if width not in _SHUFFLE_CHANNELS:
        raise ValueError(f"model.width: {width!r} is not a ShuffleNetV2 width; allowed: 0.5, 1.0, 1.5, 2.0")
    return ShuffleNetV2Cifar(num_classes, in_channels=_channels(input_shape), width=width)


class _PreActBlock(nn.Module):
    """BN-ReLU-conv twice with an identity (or 1x1 projection) shortcut taken after the first BN-ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
            if stride != 1 or in_planes != planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 for 32x32 inputs (He et al., 2016), the DivideMix/ELR CIFAR backbone.

    torchvision has no pre-activation ResNet, so this is the one network written here by hand.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        stages: list[nn.Module] = []
        in_planes = width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            stages.append(
                nn.Sequential(_PreActBlock(in_planes, planes, stride), _PreActBlock(planes, planes, 1))
            )
            in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


@MODELS.register("preactresnet18", params={"width": AT_LEAST_ONE})
def preactresnet18(
    num_classes: int, input_shape: tuple[int, ...] = (3, 32, 32), width: int = 64
) -> nn.Module:
    """PreAct ResNet-18; `width` is the first stage's channels (64 in the papers, smaller for smoke runs)."""
    if width < 1:
        raise ValueError(f"model.width: {width!r} must be a positive number of channels")
    return PreActResNet18(num_classes, in_channels=_channels(input_shape), width=width)


@MODELS.register("resnet50")
def resnet50(
    num_classes: int, input_shape: tuple[int, ...] = (3, 224, 224), pretrained_path: str | Path | None = None
) -> nn.Module:
    """torchvision's ResNet-50 (ImageNet layout) for Clothing1M / Food-101N.

    `pretrained_path` is a local torchvision-format state dict (e.g. ImageNet weights downloaded once
    by the user); its classifier is kept only if its shape matches `num_classes`, otherwise the new
    head starts from torchvision's initialisation, as in the papers' fine-tuning protocol.
    """
    if _channels(input_shape) != 3:
        raise ValueError(f"resnet50 takes RGB images (3 channels); input_shape is {input_shape}")
    from torchvision import models as tvm

    model = tvm.resnet50(num_classes=num_classes)
    if pretrained_path is not None:
        _load_backbone(model, Path(pretrained_path))
    return model


def _load_backbone(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ValueError(
            f"model.pretrained_path: {str(path)!r} is not a file (expected a torchvision state dict)"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(
            f"model.pretrained_path: {str(path)!r} is not a loadable state dict (tensors only): "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from None
    state = loaded if isinstance(loaded, dict) else {}
    own = model.state_dict()
    head = {k for k in state if k.startswith("fc.") and k in own and state[k].shape != own[k].shape}
    not_resnet50 = f"model.pretrained_path: {str(path)!r} is not a ResNet-50 state dict"
    try:
        result = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    except RuntimeError as exc:  # same key, other shape: e.g. a ResNet-18's weights
        raise ValueError(f"{not_resnet50} ({str(exc).strip().splitlines()[-1].strip()})") from None
    missing = [k for k in result.missing_keys if k not in head]
    if missing or result.unexpected_keys:
        raise ValueError(f"{not_resnet50} (missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
