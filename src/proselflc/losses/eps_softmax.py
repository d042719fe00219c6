"""epsilon-softmax (Wang et al., NeurIPS 2024): CE on a softmax pushed towards one-hot, plus MAE.

p = softmax(z); the largest entry gets m added and the row is renormalised, p_eps = (p + m e_argmax) / (1 + m),
so p_eps is within epsilon = 1 / (1 + m) of a one-hot vector (the argmax index carries no gradient);
with the authors' clamp p_eps >= 1e-8,
    ce_eps_mae = alpha mean CE(y, p_eps) + beta mean 2 (1 - p_y)
(the authors' ECEandMAE, whose MAE keeps the factor 2: ||p - y||_1 for one-hot y).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from proselflc.losses.base import LOSSES, Loss, Step, soft_cross_entropy
from proselflc.registry import Param

_MIN_PROB = 1e-8
_NONNEGATIVE = Param(low=0.0)


# Defaults: the authors' CIFAR-10 symmetric-noise configuration (config.py: ECEandMAE(alpha=0.01, beta=5, m=1e5)).
@LOSSES.register("ce_eps_mae", params={"m": _NONNEGATIVE, "alpha": _NONNEGATIVE, "beta": _NONNEGATIVE})
class CEEpsilonMAE(Loss):
    """alpha CE(y, epsilon-softmax(z)) + beta ||softmax(z) - y||_1."""

    def __init__(self, num_classes: int, m: float = 1e5, alpha: float = 0.01, beta: float = 5.0) -> None:
        super().__init__(num_classes)
        self.m = float(m)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, m={self.m}, alpha={self.alpha}, beta={self.beta}"

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        p = F.softmax(logits, dim=1)
        boost = self.m * F.one_hot(p.detach().argmax(dim=1), self.num_classes).to(p.dtype)
        p_eps = ((p + boost) / (self.m + 1.0)).clamp_min(_MIN_PROB)
        ce_eps = soft_cross_entropy(p_eps.log(), targets).mean()
        mae = 2.0 * (1.0 - (targets * p).sum(dim=1)).mean()
        return self.alpha * ce_eps + self.beta * mae
