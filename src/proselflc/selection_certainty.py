"""How sure a selection made on noisy validation labels is.

A study selects the configuration with the best noisy-validation accuracy. Two configurations scored on
the same validation examples differ only where exactly one of them is right, so the honest question is
paired: resampling the validation examples, how often does the chosen configuration still beat the
runner-up? Numpy only: the analysis, the runner and the benchmarks all call it.
"""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    chosen: np.ndarray, runner_up: np.ndarray, resamples: int = 10_000, seed: int = 0
) -> float:
    """P(the chosen configuration beats the runner-up) under a paired bootstrap of the validation examples.

    `chosen` and `runner_up` are per-example correctness (bool or 0/1) on the SAME validation examples, in
    the same order. A resample draws n examples with replacement; the chosen one wins it when it is right
    on more of them, and a tie counts half. Only the examples where the two disagree move the difference,
    so a resample is a multinomial draw of (chosen right only, runner-up right only, same) counts: exact
    for the bootstrap, and O(resamples) whatever the split's size.
    """
    a = np.asarray(chosen, dtype=bool).ravel()
    b = np.asarray(runner_up, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(
            f"paired_bootstrap: chosen has {a.size} validation examples and runner_up {b.size}; "
            "both must be scored on the same examples"
        )
    if a.size == 0:
        raise ValueError("paired_bootstrap: no validation examples to resample")
    n = a.size
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(b & ~a))
    probs = [only_a / n, only_b / n, (n - only_a - only_b) / n]
    counts = np.random.default_rng(seed).multinomial(n, probs, size=resamples)
    diff = counts[:, 0] - counts[:, 1]
    return float((np.count_nonzero(diff > 0) + 0.5 * np.count_nonzero(diff == 0)) / resamples)
