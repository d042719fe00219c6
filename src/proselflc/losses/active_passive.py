"""Active-passive losses (Ma et al., ICML 2020): a normalised active loss plus a passive one, both robust.

NCE = CE(y, p) / sum_k CE(e_k, p) = (-sum_c y_c log p_c) / (-sum_c log p_c) is the active part. The passive
part is reverse cross entropy RCE = -sum_c p_c log y_c with log 0 replaced by log 1e-4 and p clamped to
[1e-7, 1] (the authors' code), or MAE written as 1 - p_y (the authors' 'reduced' MAE, half of ||p - y||_1).
    nce_rce = alpha NCE + beta RCE,   nce_mae = alpha NCE + beta (1 - p_y),  each averaged over the batch.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from proselflc.losses.base import LOSSES, Loss, Step
from proselflc.registry import Param

#: The authors' RCE: log 0 -> log 1e-4 for the target, probabilities clamped to [1e-7, 1].
_RCE_MIN_TARGET = 1e-4
_RCE_MIN_PROB = 1e-7
_SCALE = Param(low=0.0)


def normalized_cross_entropy(log_p: Tensor, targets: Tensor) -> Tensor:
    """Per-example NCE: CE(y, p) divided by the sum of CE over all C one-hot labels."""
    return (targets * log_p).sum(dim=1) / log_p.sum(dim=1)


def reverse_cross_entropy(p: Tensor, targets: Tensor) -> Tensor:
    """Per-example RCE -sum_c p_c log y_c, with the authors' clamps (log 0 -> log 1e-4, p >= 1e-7)."""
    return -(p.clamp(_RCE_MIN_PROB, 1.0) * targets.clamp(_RCE_MIN_TARGET, 1.0).log()).sum(dim=1)


class _ActivePassive(Loss):
    """alpha * active + beta * passive, both per-example terms averaged over the batch."""

    def __init__(self, num_classes: int, alpha: float = 1.0, beta: float = 1.0) -> None:
        super().__init__(num_classes)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}, beta={self.beta}"

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        nce = normalized_cross_entropy(F.log_softmax(logits, dim=1), targets).mean()
        return self.alpha * nce + self.beta * self.passive(F.softmax(logits, dim=1), targets).mean()

    def passive(self, p: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError


@LOSSES.register("nce_rce", params={"alpha": _SCALE, "beta": _SCALE})
class NCEandRCE(_ActivePassive):
    """NCE + RCE: alpha NCE + beta RCE (the authors' CIFAR-10 choice: alpha = beta = 1)."""

    def passive(self, p: Tensor, targets: Tensor) -> Tensor:
        return reverse_cross_entropy(p, targets)


@LOSSES.register("nce_mae", params={"alpha": _SCALE, "beta": _SCALE})
class NCEandMAE(_ActivePassive):
    """NCE + MAE: alpha NCE + beta (1 - p_y)."""

    def passive(self, p: Tensor, targets: Tensor) -> Tensor:
        return 1.0 - (targets * p).sum(dim=1)
