"""Early-learning regularisation (ELR; Liu et al., NeurIPS 2020): CE plus a pull towards the running average
of the model's own predictions, which keeps the network from memorising the noisy labels.

Per example i, with p = clamp(softmax(z), 1e-4, 1 - 1e-4), the target t_i is a temporal ensemble updated
each time i is in a batch, t_i <- beta t_i + (1 - beta) p_i / sum(p_i) (no gradient), and
    loss = mean_i CE(y_i, softmax(z_i)) + lambda mean_i log(1 - <t_i, p_i>).
t is a (num_examples, C) buffer: the loss needs the batch's indices, and Engine checkpoints carry t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from proselflc.losses.base import LOSSES, PerExampleLoss, Step, soft_cross_entropy
from proselflc.registry import Param

#: The authors clamp the probabilities to [1e-4, 1 - 1e-4] before the target update and the regulariser.
_CLAMP = 1e-4


@LOSSES.register(
    "elr",
    params={"lambda": Param(low=0.0, arg="lam"), "beta": Param(low=0.0, high=1.0, high_open=True)},
)
class ELR(PerExampleLoss):
    """CE + lambda log(1 - <t, p>) with t the per-example running average of the predictions (momentum beta)."""

    def __init__(self, num_classes: int, lam: float = 3.0, beta: float = 0.7) -> None:
        super().__init__(num_classes)
        self.lam = float(lam)
        self.beta = float(beta)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, lambda={self.lam}, beta={self.beta}"

    def compute_indexed(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step, index: Tensor) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        p = F.softmax(logits, dim=1).clamp(_CLAMP, 1.0 - _CLAMP)
        with torch.no_grad():
            p_det = p.detach()
            update = self.beta * self.state[index] + (1.0 - self.beta) * (p_det / p_det.sum(dim=1, keepdim=True))
            self.state[index] = update.to(self.state.dtype)
            t = self.state[index].to(logits.dtype)
        ce = soft_cross_entropy(F.log_softmax(logits, dim=1), targets).mean()
        return ce + self.lam * (1.0 - (t * p).sum(dim=1)).log().mean()
