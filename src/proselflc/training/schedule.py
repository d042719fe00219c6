"""Learning-rate schedule: linear warmup, then multistep, cosine or constant, stepped per optimiser step."""

from __future__ import annotations

import math
from collections.abc import Callable

from proselflc.config import OptimConfig


def lr_factor(optim: OptimConfig, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr after `step` optimiser steps (a `LambdaLR` lambda).

    Warmup ramps linearly over `warmup_epochs`; milestones are in epochs, as in the ProSelfLC papers.
    """
    warmup_steps = optim.warmup_epochs * steps_per_epoch
    total_steps = max(1, epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        epoch = step / steps_per_epoch
        if optim.schedule == "multistep":
            return optim.gamma ** sum(epoch >= m for m in optim.milestones)
        if optim.schedule == "cosine":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor
