"""Every per-epoch metric in one table: its name, whether it reads clean labels, its better direction, and
the value it takes when a run diverged.

Everything that needs to know about metrics derives from this table: the keys the Engine reports
(`proselflc.training.METRIC_KEYS`), the Engine's row for a diverged epoch, the selection guard
(`proselflc.sweep_contract.uses_clean_labels`, also checked by `proselflc tune`'s config) and the
report's default optimisation direction. A new metric is a row here plus the code in the Engine that
computes it. Standard library only: the sweep contract, the analysis and the training all import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Metric:
    """One per-epoch metric.

    `clean_labels`: computed with the true labels (the clean test set, the noisy subset's true labels),
    so it is reported and never used to select a configuration. `better`: "max" or "min" for a metric a
    configuration can be judged by; None for counters, settings and diagnostics that are neither.
    `if_diverged`: the value an evaluated metric takes on a diverged epoch (no evaluation runs then);
    None for a metric the training pass itself measures, reported as measured.
    """

    name: str
    doc: str
    clean_labels: bool = False
    better: Direction | None = None
    if_diverged: float | None = None


NAN = float("nan")

#: The per-epoch metrics, in the order of metrics.csv's columns.
METRICS: tuple[Metric, ...] = (
    Metric("epoch", "epochs trained so far"),
    Metric("lr", "learning rate of the last optimiser update"),
    Metric("train_loss", "mean training loss over the epoch, on the noisy labels", better="min"),
    Metric("val_accuracy", "accuracy on the held-out split of the noisy training labels", better="max",
           if_diverged=0.0),
    Metric("test_accuracy", "accuracy on the clean test set", clean_labels=True, better="max", if_diverged=0.0),
    Metric("test_loss", "cross entropy on the clean test set", clean_labels=True, better="min", if_diverged=NAN),
    Metric("test_entropy", "mean prediction entropy on the test set, divided by log C", clean_labels=True,
           if_diverged=NAN),
    Metric("test_max_p", "mean top probability on the test set", clean_labels=True, if_diverged=NAN),
    # Which examples are noisy is known only from the true labels, so this needs them as much as clean_fit does.
    Metric("noisy_fit", "accuracy on the noisy subset w.r.t. its noisy labels (memorisation: less is better)",
           clean_labels=True, better="min", if_diverged=NAN),
    Metric("noisy_corrected", "accuracy on the noisy subset w.r.t. its true labels (correction)",
           clean_labels=True, better="max", if_diverged=NAN),
    Metric("clean_fit", "accuracy on the clean subset of the training split", clean_labels=True, better="max",
           if_diverged=NAN),
    Metric("measured_noise_rate", "the share of the training labels (validation split included) that differ from "
           "the true labels (CIFAR-N: the label set's real noise rate); NaN where they are unknown", clean_labels=True),
    Metric("mean_epsilon", "mean target-correction weight epsilon over the epoch"),
    # Label Wave (Yuan et al., ICLR 2024): it dips while the model learns the clean patterns and rises again once
    # it starts memorising noisy labels. A diagnostic with no better direction (neither more nor fewer changes is
    # a goal); its first smoothed minimum (`proselflc.memorisation.memorisation_onset`) is the no-clean-label stopping
    # signal the onset scheduler and `selection.epoch: memorisation_onset` use.
    Metric("prediction_changes", "share of training examples whose predicted class changed since the last epoch "
           "(read from the training forward passes; 1 at epoch 1, where every prediction is new)"),
    Metric("samples_per_s", "training throughput of the epoch"),
    Metric("diverged", "the training loss became NaN or inf: the run ends at this epoch"),
)


def names() -> tuple[str, ...]:
    """Every metric's name, in table order: the keys of each row the Engine reports."""
    return tuple(m.name for m in METRICS)


def get(name: str) -> Metric | None:
    """The table's row for `name`, or None for a name the table does not have."""
    return next((m for m in METRICS if m.name == name), None)


def clean_label_metrics() -> tuple[str, ...]:
    """Metrics computed with the true labels: reported, never selected on."""
    return tuple(m.name for m in METRICS if m.clean_labels)


def selectable_metrics() -> tuple[str, ...]:
    """Metrics a search may select on: computed from the noisy labels, with a better direction."""
    return tuple(m.name for m in METRICS if not m.clean_labels and m.better is not None)


def uses_clean_labels(metric: str) -> bool:
    """Whether selecting on `metric` would read the true labels.

    A name the table does not have counts when it starts with `test_` (a metric of an older or
    extended sweep that measures the test set).
    """
    row = get(metric)
    return row.clean_labels if row is not None else metric.startswith("test_")


def better(metric: str) -> Direction:
    """Whether a larger ("max") or a smaller ("min") `metric` is better; ValueError where the table has none."""
    row = get(metric)
    if row is None or row.better is None:
        judged = ", ".join(m.name for m in METRICS if m.better is not None)
        what = "is not in the metric table" if row is None else "has no better direction"
        raise ValueError(f"metric {metric!r} {what}; pass the mode (max or min) explicitly, or use one of: {judged}")
    return row.better


def diverged_values() -> dict[str, float]:
    """The evaluated metrics' values on a diverged epoch (the Engine adds what training measured)."""
    return {m.name: m.if_diverged for m in METRICS if m.if_diverged is not None}

