"""Derivative manipulation (DM, Wang et al.): define the gradient, not the loss.

For example i with p_iy the probability of its labelled class the gradient w.r.t. its logits is
    w_i / sum_j w_j * (p_i - y_i) / ||p_i - y_i||_1,   w_i = exp(beta * (1 - p_iy) * p_iy ** lambda).
The direction is that of CE, its L1 magnitude is the normalised emphasis w_i / sum_j w_j, so
beta and lambda decide which examples (difficult, lambda = 0; medium, lambda > 0 as in IMAE) the
training focuses on. A `torch.autograd.Function` carries it, so the loop only calls `backward()`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from proselflc.losses.base import LOSSES, Loss, Step
from proselflc.registry import Param


class _DerivativeManipulation(torch.autograd.Function):
    """Forward: emphasis-weighted MAE, sum_i w~_i ||p_i - y_i||_1 / 2; backward: the DM gradient."""

    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, targets: Tensor, beta: float, lam: float) -> Tensor:
        p = F.softmax(logits, dim=1)
        p_y = (targets * p).sum(dim=1).clamp(0.0, 1.0)
        # softmax over the batch = exp(.) / sum exp(.) without overflow for large beta.
        weights = torch.softmax(beta * (1.0 - p_y) * p_y.pow(lam), dim=0)
        diff = p - targets
        l1 = diff.abs().sum(dim=1)
        grad = weights.unsqueeze(1) * diff / l1.clamp_min(torch.finfo(l1.dtype).tiny).unsqueeze(1)
        ctx.save_for_backward(grad)
        return (weights * l1).sum() / 2.0

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None, None]:
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None, None


@LOSSES.register("dm_imae", params={"beta": Param(low=0.0), "lambda": Param(low=0.0, arg="lam")})
class DMIMAE(Loss):
    """Derivative manipulation with the emphasis density exp(beta (1 - p) p^lambda)."""


    def __init__(self, num_classes: int, beta: float = 2.0, lam: float = 0.0) -> None:
        super().__init__(num_classes)
        self.beta = float(beta)
        self.lam = float(lam)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, beta={self.beta}, lambda={self.lam}"

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        return _DerivativeManipulation.apply(logits, targets, self.beta, self.lam)
