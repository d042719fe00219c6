"""Asymmetric loss functions (Zhou et al., ICML 2021): bounded losses of p_y alone that are
noise-tolerant under clean-label-dominant noise, computed as the authors' code does (no clamps).

    AGCE = ((a + 1)^q - (a + p_y)^q) / q,    a > 0, q > 0
    AUL  = ((a - p_y)^q - (a - 1)^q) / q,    a > 1, q > 0
each averaged over the batch; p_y = <y, softmax(z)>.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from proselflc.losses.base import LOSSES, Loss, Step
from proselflc.registry import Param

_POSITIVE = Param(low=0.0, low_open=True)


class _Asymmetric(Loss):
    """A loss of p_y with hyperparameters a and q."""

    def __init__(self, num_classes: int, a: float, q: float) -> None:
        super().__init__(num_classes)
        self.a = float(a)
        self.q = float(q)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, a={self.a}, q={self.q}"

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        return self.per_example((targets * F.softmax(logits, dim=1)).sum(dim=1)).mean()

    def per_example(self, p_y: Tensor) -> Tensor:
        raise NotImplementedError


# Defaults: the authors' CIFAR-10/100 configuration (config.py: AGCELoss(a=0.6, q=0.6), AUELoss(a=5.5, q=3)).
@LOSSES.register("agce", params={"a": _POSITIVE, "q": _POSITIVE})
class AGCE(_Asymmetric):
    """Asymmetric generalised cross entropy ((a + 1)^q - (a + p_y)^q) / q."""

    def __init__(self, num_classes: int, a: float = 0.6, q: float = 0.6) -> None:
        super().__init__(num_classes, a, q)

    def per_example(self, p_y: Tensor) -> Tensor:
        return ((self.a + 1.0) ** self.q - (self.a + p_y).pow(self.q)) / self.q


@LOSSES.register("aul", params={"a": Param(low=1.0, low_open=True), "q": _POSITIVE})
class AUL(_Asymmetric):
    """Asymmetric unhinged loss ((a - p_y)^q - (a - 1)^q) / q (AUELoss in the authors' code)."""

    def __init__(self, num_classes: int, a: float = 5.5, q: float = 3.0) -> None:
        super().__init__(num_classes, a, q)

    def per_example(self, p_y: Tensor) -> Tensor:
        return ((self.a - p_y).pow(self.q) - (self.a - 1.0) ** self.q) / self.q
