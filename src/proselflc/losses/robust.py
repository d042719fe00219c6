"""Robust (bounded or symmetric) losses from the noisy-label literature, computed from logits."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from proselflc.losses.base import LOSSES, Loss, Step, soft_cross_entropy
from proselflc.registry import Param

#: SCE's reverse cross entropy replaces log 0 by log(1e-4), as in the authors' code.
_RCE_MIN_TARGET = 1e-4


class _Plain(Loss):
    """A loss without target modification: logs `mean_epsilon` = 0."""

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        return self.per_example(F.log_softmax(logits, dim=1), targets).mean()

    def per_example(self, log_p: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError


@LOSSES.register("mae")
class MAE(_Plain):
    """Mean absolute error ||p - y||_1 (= 2 (1 - p_y) for one-hot y), Ghosh et al."""


    def per_example(self, log_p: Tensor, targets: Tensor) -> Tensor:
        return (log_p.exp() - targets).abs().sum(dim=1)


@LOSSES.register("mse")
class MSE(_Plain):
    """Squared error ||p - y||_2^2 between the softmax output and the target."""


    def per_example(self, log_p: Tensor, targets: Tensor) -> Tensor:
        return (log_p.exp() - targets).pow(2).sum(dim=1)


@LOSSES.register("gce", params={"q": Param(low=0.0, high=1.0, low_open=True)})
class GCE(_Plain):
    """Generalised cross entropy (Zhang & Sabuncu): sum_c y_c (1 - p_c^q) / q; q -> 0 is CE, q = 1 is MAE/2."""


    def __init__(self, num_classes: int, q: float = 0.7) -> None:
        super().__init__(num_classes)
        self.q = float(q)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, q={self.q}"

    def per_example(self, log_p: Tensor, targets: Tensor) -> Tensor:
        return (targets * (1.0 - (self.q * log_p).exp())).sum(dim=1) / self.q


@LOSSES.register("sce", params={"alpha": Param(low=0.0), "beta": Param(low=0.0)})
class SCE(_Plain):
    """Symmetric cross entropy (Wang et al. 2019): alpha CE(y, p) + beta CE(p, y), log 0 -> log 1e-4."""


    def __init__(self, num_classes: int, alpha: float = 0.1, beta: float = 1.0) -> None:
        super().__init__(num_classes)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}, beta={self.beta}"

    def per_example(self, log_p: Tensor, targets: Tensor) -> Tensor:
        log_targets = targets.clamp(_RCE_MIN_TARGET, 1.0).log()
        reverse = -(log_p.exp() * log_targets).sum(dim=1)
        return self.alpha * soft_cross_entropy(log_p, targets) + self.beta * reverse
