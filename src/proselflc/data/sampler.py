"""Class-balanced batches by noisy label, the ProSelfLC code's `BalancedBatchSampler`, as tensor ops on the device.

Each batch takes `classes_per_batch` distinct classes, drawn uniformly, and `per_class` examples of each.
Within a class the examples come in the order of a fresh random permutation per epoch, the next
`per_class` each time the class is drawn (wrapping round when a class is drawn more often than it has
examples), so an epoch visits about every example once, as the authors' per-class cursors do. Random
numbers come from a CPU generator (the Engine's checkpointed shuffle generator), so a seed gives the
same batches on every device; the sorting and gathering run where `labels` live.
"""

from __future__ import annotations

import torch

from proselflc.errors import ConfigError


def class_balanced_order(
    labels: torch.Tensor, classes_per_batch: int, per_class: int, num_batches: int, generator: torch.Generator
) -> torch.Tensor:
    """Positions into `labels`, `num_batches * classes_per_batch * per_class` of them, batch after batch."""
    device = labels.device
    counts = torch.bincount(labels)
    eligible = torch.nonzero(counts >= per_class).flatten()
    if len(eligible) < classes_per_batch:
        raise ConfigError(
            f"train.classes_per_batch = {classes_per_batch}: only {len(eligible)} classes have at least "
            f"{per_class} training examples (train.batch_size / classes_per_batch) under the noisy labels"
        )
    # One random permutation per class: sort by a random key, then (stably) by label.
    keys = torch.rand(len(labels), generator=generator).to(device)
    by_key = torch.argsort(keys)
    members = by_key[torch.argsort(labels[by_key], stable=True)]
    starts = torch.cumsum(counts, 0) - counts
    # The classes of each batch: the first classes_per_batch of a random permutation of the eligible ones.
    pick = torch.argsort(torch.rand(num_batches, len(eligible), generator=generator).to(device), dim=1)
    classes = eligible[pick[:, :classes_per_batch]]  # (B, K)
    # How often each class was drawn in earlier batches: where its next per_class examples start.
    drawn = torch.zeros(num_batches, len(counts), dtype=torch.long, device=device)
    drawn.scatter_(1, classes, 1)
    earlier = (torch.cumsum(drawn, 0) - drawn).gather(1, classes)  # (B, K)
    offsets = earlier[:, :, None] * per_class + torch.arange(per_class, device=device)  # (B, K, M)
    within = offsets % counts[classes][:, :, None]
    return members[starts[classes][:, :, None] + within].flatten()
