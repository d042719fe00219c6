"""What every loss shares: input checks, target conversion, float32 compute and the `stats` dict.

Losses are stateless `nn.Module`s called as `loss_fn(logits, targets, step=..., total_steps=...)`.
Everything is computed from `log_softmax(logits)` so no loss ever takes `log(p + eps)`.
A loss registers itself in `LOSSES` with its hyperparameters' ranges; each default is written once,
in the constructor's signature or in its `Param`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from proselflc.registry import Registry

Step = int | float | Tensor

#: Every loss, by `loss.name`; the modules of this package register into it.
LOSSES = Registry("loss", "loss", option="hyperparameter", positional=("num_classes",), package="proselflc.losses")


class Loss(nn.Module):
    """Base class: subclasses implement `compute(logits, targets, step, total_steps)` on float logits."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes = {num_classes!r} must be an integer >= 2")
        self.num_classes = num_classes
        #: Detached 0-dim tensors of the last forward, on the logits' device (no .item(): no GPU sync).
        self.stats: dict[str, Tensor] = {}

    def forward(self, logits: Tensor, targets: Tensor, step: Step = 0, total_steps: Step = 1) -> Tensor:
        logits = self._float_logits(logits)
        targets = self._target_probs(targets, logits)
        return self.compute(logits, targets, step, total_steps)

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    def _float_logits(self, logits: Tensor) -> Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (N, {self.num_classes}) for {type(self).__name__}; got {tuple(logits.shape)}"
            )
        # Under bf16/fp16 autocast the softmax and logs must run in float32; float64 is kept (gradcheck).
        if logits.dtype != torch.float64:
            logits = logits.float()
        return logits

    def _target_probs(self, targets: Tensor, logits: Tensor) -> Tensor:
        """(N,) class indices -> one-hot; (N, C) probabilities pass through, in the logits' dtype."""
        n = logits.shape[0]
        if targets.ndim == 1 and not targets.is_floating_point():
            if targets.shape[0] != n:
                raise ValueError(f"targets has {targets.shape[0]} labels for {n} logits rows")
            return F.one_hot(targets.long(), self.num_classes).to(logits.dtype)
        if targets.ndim == 2 and targets.shape == logits.shape and targets.is_floating_point():
            return targets.to(logits.dtype)
        raise ValueError(
            f"targets must be (N,) integer class indices or (N, {self.num_classes}) float probabilities "
            f"matching logits {tuple(logits.shape)}; got {tuple(targets.shape)} of dtype {targets.dtype}"
        )

    def _constant(self, value: float, like: Tensor) -> Tensor:
        """A 0-dim tensor on the logits' device, made by a fill kernel rather than a host copy."""
        return like.new_full((), value).detach()


def time_ratio(step: Step, total_steps: Step, like: Tensor) -> Tensor:
    """t = step / total_steps clipped to [0, 1], as a 0-dim tensor; works with python numbers or tensors."""
    if not isinstance(step, Tensor) and not isinstance(total_steps, Tensor):
        if total_steps <= 0:
            raise ValueError(f"total_steps = {total_steps!r} must be > 0")
        t = min(max(step / total_steps, 0.0), 1.0)
        return like.new_full((), t)
    step_t = torch.as_tensor(step, device=like.device).to(like.dtype)
    total_t = torch.as_tensor(total_steps, device=like.device).to(like.dtype)
    return (step_t / total_t).clamp(0.0, 1.0)


def soft_cross_entropy(log_p: Tensor, q: Tensor) -> Tensor:
    """Per-example CE(q, p) = -sum_c q_c log p_c from log-probabilities."""
    return -(q * log_p).sum(dim=1)


def entropy(log_p: Tensor) -> Tensor:
    """Per-example Shannon entropy (nats) from log-probabilities."""
    return -(log_p.exp() * log_p).sum(dim=1)


def normalised_entropy(log_p: Tensor) -> Tensor:
    """Entropy divided by log C, in [0, 1]."""
    return entropy(log_p) / math.log(log_p.shape[1])
