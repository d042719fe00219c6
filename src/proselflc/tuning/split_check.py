"""Before Ray starts: is the noisy validation split large enough to tell configurations apart at each noise rate?

Noisy labels shrink a clean-accuracy difference by kappa (`proselflc.selection_certainty`), so a split that
separates configurations cleanly can be a coin toss at 80% noise. The criterion: a 2-sigma paired test
resolving a 1-point clean difference between two configurations that disagree (exactly one is right) on
10% of the validation examples, i.e. n >= 4 x 0.1 / (kappa x 0.01)^2 noisy validation examples.
The dataset's size is read only where that is cheap (an embedded dataset, `needs_root=False`); for one that
needs files the check says so rather than load gigabytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proselflc import selection_certainty as sc

if TYPE_CHECKING:
    from proselflc.tuning.config import SweepConfig

#: How a warning states the criterion.
CRITERION = (
    f"a {sc.RESOLVE_Z:g}-sigma paired test resolving a {100 * sc.RESOLVE_DELTA:g}-point clean-accuracy difference "
    f"between configs that disagree on {100 * sc.DISAGREEMENT:g}% of the validation examples"
)


def training_size(sweep: SweepConfig) -> tuple[int, int] | None:
    """(training examples, classes) of the sweep's dataset where reading it is cheap (embedded); else None."""
    from proselflc import data as data_lib
    from proselflc.data.base import DATASETS

    data = sweep.base.data
    if DATASETS.entry(data.name).info.get("needs_root", True):
        return None
    dataset = data_lib.load(data).limit(data.limit)
    return len(dataset.train_labels), dataset.num_classes


def warning_text(lines: list[str]) -> str:
    """The console's warning: the criterion once, then one line per noise rate (empty when all is well)."""
    if not lines:
        return ""
    return "\n".join([f"warning: noisy validation may not tell configurations apart ({CRITERION}):",
                      *(f"  {line}" for line in lines)])


def split_warnings(sweep: SweepConfig, size: tuple[int, int] | None = None) -> list[str]:
    """One line per noise rate whose validation split is too small to resolve a 1-point difference (see the
    module docstring), naming data.val_fraction and the size that would do; one line saying the check was
    skipped where the dataset's size or its noise is unknown. `size`: (training examples, classes), else read."""
    from proselflc.data.base import DATASETS

    data, noise = sweep.base.data, sweep.base.noise
    if DATASETS.entry(data.name).info.get("real_noise"):
        return [f"validation split check skipped: {data.name}'s labels are noisy already, its noise (kappa) is unknown"]
    size = size or training_size(sweep)
    if size is None:
        return [f"validation split check skipped: the size of {data.name} is unknown until its files are read"]
    n_train, classes = size
    n_val = round(data.val_fraction * n_train)
    lines = []
    for rate in sweep.noise.rates:
        kappa = sc.noise_kappa(sweep.noise.kind, rate, classes, matrix=noise.matrix,
                               allow_true_label=noise.allow_true_label)
        setting = sc.setting_name(sweep.noise.kind, rate)
        need = sc.required_size(kappa)
        if kappa is None or need is None:
            lines.append(f"{setting}: validation split check skipped: the noise's transition matrix is unknown")
            continue
        if n_val >= need:
            continue
        if kappa <= 0:
            fix = "no split can: at this rate noisy labels carry no signal about clean accuracy"
        elif need <= n_train / 2:
            fix = f"data.val_fraction >= {need / n_train:.2f} would do"
        else:
            fix = f"more than half the {n_train} training examples, so no data.val_fraction here does"
        effective = sc.effective_size(n_val, kappa) or 0.0
        lines.append(
            f"{setting}: {n_val} validation examples (data.val_fraction {data.val_fraction:g} x {n_train}), "
            f"effective {effective:.0f} at kappa {kappa:.2f}; needs {need:,.0f}: {fix}"
        )
    return lines
