"""What every loss shares: input checks, target conversion, float32 compute and the `stats` dict.

Losses are `nn.Module`s called as `loss_fn(logits, targets, step=..., total_steps=..., index=...)`; most
are stateless and ignore `index`. A loss with per-example state (ELR's running average of predictions)
sets `per_example_state`, learns the training set's size from `set_num_examples(n)` and reads `index`,
the batch's positions in the training set; its state is a buffer, so it is in `state_dict()` and every
Engine checkpoint carries it. Everything is computed from `log_softmax(logits)` so no loss ever takes `log(p + eps)`.
A loss registers itself in `LOSSES` with its hyperparameters' ranges; each default is written once,
in the constructor's signature or in its `Param`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from proselflc.registry import Registry

Step = int | float | Tensor

#: Every loss, by `loss.name`; the modules of this package register into it.
LOSSES = Registry("loss", "loss", option="hyperparameter", positional=("num_classes",), package="proselflc.losses")


class Loss(nn.Module):
    """Base class: subclasses implement `compute(logits, targets, step, total_steps)` on float logits."""

    #: Whether the loss keeps state per training example (then it needs `index` and `set_num_examples`).
    per_example_state: ClassVar[bool] = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes = {num_classes!r} must be an integer >= 2")
        self.num_classes = num_classes
        #: Detached 0-dim tensors of the last forward, on the logits' device (no .item(): no GPU sync).
        self.stats: dict[str, Tensor] = {}

    def forward(
        self, logits: Tensor, targets: Tensor, step: Step = 0, total_steps: Step = 1, index: Tensor | None = None
    ) -> Tensor:
        """The batch's loss; `index` (the examples' positions in the training set) is read only by a
        loss with `per_example_state`."""
        logits = self._float_logits(logits)
        targets = self._target_probs(targets, logits)
        return self.compute(logits, targets, step, total_steps)

    def set_num_examples(self, n: int) -> None:
        """The training set has `n` examples (the Engine says so once); stateless losses ignore it."""

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


class PerExampleLoss(Loss):
    """A loss with a (num_examples, C) float buffer `state`, one row per training example.

    Subclasses implement `compute_indexed(logits, targets, step, total_steps, index)`. The buffer is
    sized by `set_num_examples` and, when a checkpoint is loaded, by the checkpoint itself, so a resumed
    run continues from exactly the state it saved.
    """

    per_example_state = True

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.register_buffer("state", torch.zeros(0, num_classes))

    def set_num_examples(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_examples = {n!r} must be an integer >= 1")
        self.state = self.state.new_zeros(n, self.num_classes)

    def forward(
        self, logits: Tensor, targets: Tensor, step: Step = 0, total_steps: Step = 1, index: Tensor | None = None
    ) -> Tensor:
        if index is None:
            raise ValueError(f"{type(self).__name__} keeps per-example state: pass index (the batch's positions in the training set)")
        if self.state.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} keeps per-example state: call set_num_examples(n) before the first batch")
        logits = self._float_logits(logits)
        targets = self._target_probs(targets, logits)
        return self.compute_indexed(logits, targets, step, total_steps, index.to(self.state.device))

    def compute_indexed(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step, index: Tensor) -> Tensor:
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The saved buffer decides the size: a fresh loss (0 rows, or another size) takes the checkpoint's.
        saved = state_dict.get(prefix + "state")
        if isinstance(saved, Tensor) and saved.shape != self.state.shape:
            self.state = self.state.new_zeros(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
