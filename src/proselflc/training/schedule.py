"""Learning-rate schedule: linear warmup, then multistep, cosine or constant, stepped per optimiser step."""

from __future__ import annotations

import math
from collections.abc import Callable

from proselflc.config import OptimConfig


def lr_factor(optim: OptimConfig, epochs: int, batches_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr for the optimiser step that follows `step` earlier ones (a `LambdaLR` lambda).

    Warmup ramps linearly over `warmup_epochs`. Milestones count epochs (the ProSelfLC-AT papers) or
    training iterations (the ProSelfLC code: batches counted from 1, accumulated or not): an update
    takes the decayed rate once the last batch it accumulates reaches a milestone, which is where the
    authors' `WarmupMultiStepSchedule` (milestone // accumulation, stepped before the optimiser) puts it.
    """
    accumulate = optim.accumulate_steps
    steps_per_epoch = math.ceil(batches_per_epoch / accumulate)
    warmup_steps = optim.warmup_epochs * steps_per_epoch
    total_steps = max(1, epochs * steps_per_epoch)

    def last_batch(step: int) -> int:
        """1-based index of the last training batch accumulated into update `step` (0-based)."""
        epoch, within = divmod(step, steps_per_epoch)
        return epoch * batches_per_epoch + min((within + 1) * accumulate, batches_per_epoch)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if optim.schedule == "multistep":
            if optim.milestones_unit == "iterations":
                return optim.gamma ** sum(last_batch(step) >= m for m in optim.milestones)
            return optim.gamma ** sum(step / steps_per_epoch >= m for m in optim.milestones)
        if optim.schedule == "cosine":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor
