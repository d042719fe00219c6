"""Learning-rate schedule: linear warmup, then multistep, cosine or constant, stepped per optimiser update."""

from __future__ import annotations

import math
from collections.abc import Callable

from proselflc.config import OptimConfig


def lr_factor(optim: OptimConfig, epochs: int, batches_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr for the optimiser update that follows `update` earlier ones (a `LambdaLR` lambda).

    Counts optimiser updates (one per `accumulate_steps` batches, and one for an epoch's last partial
    accumulation). Warmup ramps linearly over `warmup_epochs`. Milestones count epochs (the ProSelfLC-AT
    papers) or training iterations (the ProSelfLC code: batches counted from 1, accumulated or not): an
    update takes the decayed rate once the last batch it accumulates reaches a milestone, which is where
    the authors' `WarmupMultiStepSchedule` (milestone // accumulation, stepped before the optimiser) puts it.
    """
    accumulate = optim.accumulate_steps
    updates_per_epoch = math.ceil(batches_per_epoch / accumulate)
    warmup_updates = optim.warmup_epochs * updates_per_epoch
    total_updates = max(1, epochs * updates_per_epoch)

    def last_batch(update: int) -> int:
        """1-based index of the last training batch accumulated into `update` (0-based)."""
        epoch, within = divmod(update, updates_per_epoch)
        return epoch * batches_per_epoch + min((within + 1) * accumulate, batches_per_epoch)

    def factor(update: int) -> float:
        if update < warmup_updates:
            return (update + 1) / warmup_updates
        if optim.schedule == "multistep":
            if optim.milestones_unit == "iterations":
                return optim.gamma ** sum(last_batch(update) >= m for m in optim.milestones)
            return optim.gamma ** sum(update / updates_per_epoch >= m for m in optim.milestones)
        if optim.schedule == "cosine":
            progress = (update - warmup_updates) / max(1, total_updates - warmup_updates)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor
