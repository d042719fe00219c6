"""The noisy-label diagnostics the ProSelfLC papers plot, computed from logits in one place."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from proselflc import metric_table
from proselflc.metric_table import NAN

#: The keys of every row the Engine reports, in metrics.csv's column order (see `proselflc.metric_table`).
METRIC_KEYS = metric_table.names()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy; NaN for an empty set (e.g. the noisy subset at rate 0), never a fake 0 or 1."""
    if labels.numel() == 0:
        return NAN
    return (logits.argmax(dim=1) == labels).float().mean().item()


def test_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Clean-test accuracy, cross entropy, normalised entropy (H / log C) and mean max probability."""
    log_p = F.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim=1) / math.log(logits.shape[1])
    return {
        "test_accuracy": accuracy(logits, labels),
        "test_loss": F.nll_loss(log_p, labels).item(),
        "test_entropy": entropy.mean().item(),
        "test_max_p": p.max(dim=1).values.mean().item(),
    }


def fit_metrics(
    logits: torch.Tensor, noisy: torch.Tensor, true: torch.Tensor, is_noisy: torch.Tensor | None
) -> dict[str, float]:
    """How the model fits the training set it learned from.

    `noisy_fit`: accuracy on the noisy subset w.r.t. its noisy labels (memorisation);
    `noisy_corrected`: on the same subset w.r.t. the true labels (correction);
    `clean_fit`: accuracy on the clean subset. Unknown (NaN) where the noise mask is unknown.
    """
    if is_noisy is None:
        return {"noisy_fit": NAN, "noisy_corrected": NAN, "clean_fit": NAN}
    return {
        "noisy_fit": accuracy(logits[is_noisy], noisy[is_noisy]),
        "noisy_corrected": accuracy(logits[is_noisy], true[is_noisy]),
        "clean_fit": accuracy(logits[~is_noisy], noisy[~is_noisy]),
    }

