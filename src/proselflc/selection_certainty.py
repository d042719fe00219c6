"""How sure a selection made on noisy validation labels is, and how large a noisy split must be to decide.

A study selects the configuration with the best noisy-validation accuracy. Two configurations scored on
the same validation examples differ only where exactly one of them is right, so the honest question is
paired: resampling the validation examples, how often does the chosen configuration still beat the
runner-up? Numpy only: the analysis, the runner and the benchmarks all call it.

The maths of noisy validation (docs/tune.md, "How sure is a selection"):

- Label noise with transition matrix T (T[i, j] = P(noisy label j | true label i), K classes) shrinks a
  clean-accuracy difference on noisy validation. A prediction that is right scores T[i, i]; one that is
  wrong, with its errors spread evenly over the other classes, scores the mean off-diagonal entry of row
  i. So, with balanced classes, noisy accuracy = o + kappa * clean accuracy with
  kappa = mean(diag T) - mean(offdiag T); symmetric noise at rate r: kappa = 1 - r K / (K - 1)
  (0.11 at 80% on 10 classes); pair-flip at rate r gives the same kappa (its errors are not even, the
  assumption is the estimate's).
- The paired difference's standard error is sqrt(q / n) for a share q of examples on which exactly one
  configuration is right, so a noisy split of n examples separates as well as a clean one of
  n_eff = n * kappa^2 (the effective validation size).
- To resolve a clean difference `delta` by a 2-sigma paired test needs kappa * delta >= 2 sqrt(q / n):
  n >= 4 q / (kappa delta)^2. With q = 0.1 and delta = 1 point, a clean split needs 4,000 examples.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Selections at least this sure are "decided"; configs the choice is less sure to beat are "tied" with it.
DECIDED = 0.9
#: Resamples of the paired bootstrap (its Monte Carlo error is below 0.005).
RESAMPLES = 10_000
#: The split-size check: the clean-accuracy difference to resolve, by a `Z`-sigma paired test, when the two
#: configurations disagree (exactly one is right) on a share `DISAGREEMENT` of the validation examples.
RESOLVE_DELTA = 0.01
RESOLVE_Z = 2.0
DISAGREEMENT = 0.10
#: Where a trial (and a `proselflc train` run directory) keeps its last epoch's per-example validation
#: correctness, beside result.json, and that file's format.
VAL_CORRECT_FILE = "val_correct.json"
CORRECT_FORMAT = 1


def paired_bootstrap(
    chosen: np.ndarray, runner_up: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
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


# -- noise: how much of a clean difference noisy validation still shows ---------------------------------


def transition_matrix(
    kind: str, rate: float, num_classes: int, matrix: Sequence[Sequence[float]] | None = None,
    allow_true_label: bool = False,
) -> np.ndarray | None:
    """The expected K x K transition matrix of `proselflc.noise`'s generators, or None where it is unknown.

    symmetric: 1 - r on the diagonal, r / (K - 1) elsewhere (r / K added everywhere instead with
    `allow_true_label`, the DivideMix variant); pairflip: 1 - r, and r to the next class;
    cifar100_superclass: two fine classes of each superclass swap at rate r (a fixed representative pair:
    kappa depends only on how many classes swap); matrix: the matrix. None for a kind it does not know
    (e.g. a plugin's) and for real noise.
    """
    from proselflc import noise

    k = num_classes
    eye = np.eye(k)
    if kind == "symmetric":
        if allow_true_label:
            return (1 - rate) * eye + rate / k
        return (1 - rate) * eye + rate / (k - 1) * (1 - eye)
    if kind == "pairflip":
        return (1 - rate) * eye + rate * np.roll(eye, 1, axis=1)
    if kind == "matrix" and matrix is not None:
        return noise.check_matrix(matrix, k)
    if kind == "cifar100_superclass" and k == len(noise.CIFAR100_FINE_TO_COARSE):
        t = eye.copy()
        coarse = np.asarray(noise.CIFAR100_FINE_TO_COARSE)
        for group in range(int(coarse.max()) + 1):
            a, b = np.flatnonzero(coarse == group)[:2]
            t[[a, b], [a, b]] = 1 - rate
            t[a, b] = t[b, a] = rate
        return t
    return None


def kappa(matrix: np.ndarray | None) -> float | None:
    """mean(diag T) - mean(offdiag T): the factor by which noisy validation shrinks a clean-accuracy difference."""
    if matrix is None:
        return None
    t = np.asarray(matrix, dtype=float)
    k = t.shape[0]
    diag = float(np.trace(t)) / k
    off = (float(t.sum()) - float(np.trace(t))) / (k * (k - 1))
    return diag - off


def effective_size(n: int, kappa_: float | None) -> float | None:
    """n * kappa^2: the clean split that separates two configurations as well as n noisy labels (None: unknown)."""
    return None if kappa_ is None else n * kappa_**2


def required_size(
    kappa_: float | None, delta: float = RESOLVE_DELTA, z: float = RESOLVE_Z, disagreement: float = DISAGREEMENT
) -> float | None:
    """Noisy validation examples a z-sigma paired test needs to resolve a clean difference `delta`:
    z^2 q / (kappa delta)^2. Infinite when noisy labels carry no signal (kappa <= 0); None when unknown."""
    if kappa_ is None:
        return None
    if kappa_ <= 0:
        return math.inf
    return z**2 * disagreement / (kappa_ * delta) ** 2


# -- what a trial keeps of its last evaluation -------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A trial's last evaluation: per-example noisy-validation correctness, the split's fingerprint, the epoch,
    and kappa of its noise (None: unknown, e.g. real noise)."""

    correct: np.ndarray
    split: str
    epoch: int
    kappa: float | None


def noise_kappa(
    kind: str, rate: float, num_classes: int, *, matrix: Sequence[Sequence[float]] | None = None,
    allow_true_label: bool = False, labels_are_noisy: bool = False,
) -> float | None:
    """kappa of a run's noise (None where unknown: labels that are noisy already, a kind without a known T)."""
    if labels_are_noisy:
        return None
    return kappa(transition_matrix(kind, rate, num_classes, matrix, allow_true_label))


def split_id(val_index: np.ndarray, val_labels: np.ndarray) -> str:
    """A short fingerprint of a validation split (its examples and their noisy labels): pairs must share it."""
    digest = hashlib.sha1(np.ascontiguousarray(val_index, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(val_labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def encode_correct(correct: np.ndarray, *, epoch: int, split: str, kappa_: float | None) -> str:
    """The JSON text a trial stores: per-example correctness as packed bits (n/8 bytes, base64)."""
    bits = np.asarray(correct, dtype=bool).ravel()
    return json.dumps({
        "format": CORRECT_FORMAT, "epoch": int(epoch), "n": int(bits.size), "split": split, "kappa": kappa_,
        "bits": base64.b64encode(np.packbits(bits).tobytes()).decode("ascii"),
    }) + "\n"


def decode_correct(text: str) -> Stored:
    """`encode_correct`'s text read back; ValueError when it is not that."""
    try:
        data = json.loads(text)
        n = int(data["n"])
        packed = np.frombuffer(base64.b64decode(data["bits"], validate=True), dtype=np.uint8)
        if packed.size * 8 < n:
            raise ValueError(f"{packed.size} bytes cannot hold {n} bits")
        bits = np.unpackbits(packed, count=n).astype(bool)
        k = data.get("kappa")
        return Stored(bits, str(data["split"]), int(data["epoch"]), None if k is None else float(k))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a stored validation correctness: {exc}") from None


# -- a selection's certainty ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certainty:
    """How sure one study's selection is: what the manifest, the tables and the report carry.

    `p_beats_runner_up` is None, with `reason` saying why, where it cannot be computed (no runner-up, no
    stored correctness, different splits); `n_eff` is None where the noise's transition matrix is unknown.
    """

    p_beats_runner_up: float | None
    runner_up: str | None
    n_val: int | None
    kappa: float | None
    n_eff: float | None
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        return describe(self.p_beats_runner_up, self.reason, self.n_val, self.n_eff)


def describe(p: float | None, reason: str, n_val: int | None, n_eff: float | None) -> str:
    """'P(beats runner-up) 0.93, n_eff 24 of 202' or 'P(beats runner-up) n/a (no runner-up: ...)'."""
    text = f"P(beats runner-up) {p:.2f}" if p is not None else f"P(beats runner-up) n/a ({reason or 'unknown'})"
    if n_val is not None:
        text += f", n_eff {n_eff:.0f} of {n_val}" if n_eff is not None else f", n_val {n_val} (n_eff n/a: noise unknown)"
    return text


def certainty(
    chosen: str | None,
    runner_up: str | None,
    *,
    runner_up_name: str | None,
    chosen_epoch: int | None = None,
    runner_up_epoch: int | None = None,
    resamples: int = RESAMPLES,
) -> Certainty:
    """A study's certainty from its chosen and runner-up trials' stored texts (`encode_correct`; None: none kept).

    `*_epoch`, when given, is the epoch each was selected at: a trial keeps the correctness of its last
    epoch only, so a selection at another epoch has no paired comparison.
    """
    records: list[Stored | None] = []
    bad = ""
    for name, text in (("chosen trial", chosen), ("runner-up", runner_up)):
        try:
            records.append(None if text is None else decode_correct(text))
        except ValueError:
            records.append(None)
            bad = bad or f"the {name}'s stored validation correctness is unreadable"
    mine, theirs = records
    n = None if mine is None else int(mine.correct.size)
    k = None if mine is None else mine.kappa
    base = {"runner_up": runner_up_name, "n_val": n, "kappa": k, "n_eff": None if n is None else effective_size(n, k)}
    if runner_up_name is None:
        return Certainty(None, reason="no runner-up: one eligible search trial", **base)
    if mine is None or theirs is None:
        which = "chosen trial" if mine is None else "runner-up"
        return Certainty(None, reason=bad or f"the {which} kept no per-example validation correctness", **base)
    for record, epoch in ((mine, chosen_epoch), (theirs, runner_up_epoch)):
        if epoch is not None and record.epoch != int(epoch):
            return Certainty(None, reason=f"selected at epoch {int(epoch)}; correctness is kept for the last "
                             f"epoch ({record.epoch}) only", **base)
    if mine.split != theirs.split or mine.correct.size != theirs.correct.size:
        return Certainty(None, reason="the two trials were scored on different validation splits", **base)
    if n == 0:
        return Certainty(None, reason="empty validation split", **base)
    return Certainty(paired_bootstrap(mine.correct, theirs.correct, resamples=resamples), **base)


# -- when noisy validation cannot decide ---------------------------------------------------------------------


def tied_with_choice(vals: Sequence[np.ndarray], threshold: float = DECIDED, resamples: int = RESAMPLES) -> tuple[int, list[int]]:
    """(index of the best noisy val, the configs it is less than `threshold` sure to beat), same split each.

    Ties in accuracy go to the lower index (the trial created first)."""
    scores = [int(np.count_nonzero(v)) for v in vals]
    best = max(range(len(vals)), key=lambda i: (scores[i], -i))
    tied = [i for i in range(len(vals))
            if i != best and paired_bootstrap(vals[best], vals[i], resamples=resamples) < threshold]
    return best, tied


def reseed_tied_choice(
    vals: Sequence[np.ndarray],
    more: Callable[[int, int], np.ndarray],
    *,
    extra_seeds: int,
    threshold: float = DECIDED,
    resamples: int = RESAMPLES,
) -> tuple[int, int]:
    """Spend runs on seeds, not configs, when noisy validation cannot decide: (config chosen, runs spent).

    The best config by noisy val and those statistically tied with it (`tied_with_choice`) are each run
    with `extra_seeds` more seeds (`more(config, k)` gives the k-th extra seed's validation correctness;
    each seed brings its own noise draw and validation split), and the best mean noisy val accuracy over
    its seeds wins. A decided selection spends nothing and keeps its choice.
    """
    best, tied = tied_with_choice(vals, threshold, resamples)
    if not tied or extra_seeds < 1:
        return best, 0
    contenders = [best, *tied]
    means = {c: float(np.mean([vals[c].mean(), *(more(c, k).mean() for k in range(extra_seeds))])) for c in contenders}
    pick = max(contenders, key=lambda c: (means[c], -c))
    return pick, len(contenders) * extra_seeds


def setting_name(kind: str, rate: float) -> str:
    return f"{kind}-{rate:g}"


def parse_setting(name: str) -> tuple[str, float]:
    kind, rate = name.rsplit("-", 1)
    return kind, float(rate)
