"""Label-noise generators: exact counts, no self-flips, masks, determinism by seed, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proselflc.noise import CIFAR100_FINE_TO_COARSE, KINDS, NoisyLabels, corrupt


def _balanced(n_per_class: int, num_classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), n_per_class))


def _mask_is_exact(labels: np.ndarray, result: NoisyLabels) -> None:
    assert result.noisy.dtype == np.int64 and result.is_noisy.dtype == np.bool_
    assert result.noisy.shape == labels.shape == result.is_noisy.shape
    np.testing.assert_array_equal(result.is_noisy, result.noisy != labels)


@pytest.mark.parametrize(
    ("n", "rate", "expected"),
    [(1000, 0.4, 400), (7, 0.5, 4), (5, 0.3, 2), (10, 0.0, 0), (9, 0.95, 9), (3, 0.1, 0)],
)
def test_symmetric_flips_exactly_round_rate_n_to_other_classes(n: int, rate: float, expected: int) -> None:
    labels = np.arange(n) % 10
    result = corrupt(labels, "symmetric", rate, num_classes=10, seed=3)
    _mask_is_exact(labels, result)
    assert result.is_noisy.sum() == expected


def test_symmetric_targets_are_uniform_over_the_other_classes() -> None:
    labels = np.zeros(30000, dtype=np.int64)
    result = corrupt(labels, "symmetric", 0.6, num_classes=4, seed=0)
    moved = result.noisy[result.is_noisy]
    assert moved.size == 18000 and (moved != 0).all()
    shares = np.bincount(moved, minlength=4)[1:] / moved.size
    np.testing.assert_allclose(shares, 1 / 3, atol=0.015)


def test_symmetric_dividemix_variant_may_keep_the_true_label() -> None:
    labels = _balanced(2000, 4)
    result = corrupt(labels, "symmetric", 0.5, num_classes=4, seed=1, allow_true_label=True)
    _mask_is_exact(labels, result)
    # 4000 labels are redrawn from all 4 classes: about 3/4 of them change.
    assert 2850 < result.is_noisy.sum() < 3150
    strict = corrupt(labels, "symmetric", 0.5, num_classes=4, seed=1)
    assert strict.is_noisy.sum() == 4000


@given(
    n=st.integers(0, 300),
    num_classes=st.integers(2, 12),
    rate=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_symmetric_properties(n: int, num_classes: int, rate: float, seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, num_classes, size=n)
    result = corrupt(labels, "symmetric", rate, num_classes, seed)
    _mask_is_exact(labels, result)
    assert result.is_noisy.sum() == int(np.floor(rate * n + 0.5))
    assert ((result.noisy >= 0) & (result.noisy < num_classes)).all()


def test_pairflip_moves_round_rate_nc_of_each_class_to_the_next() -> None:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate([10, 25, 7, 40, 3])])
    result = corrupt(labels, "pairflip", 0.3, num_classes=5, seed=2)
    _mask_is_exact(labels, result)
    for c, n in enumerate([10, 25, 7, 40, 3]):
        flipped = result.is_noisy & (labels == c)
        assert flipped.sum() == int(np.floor(0.3 * n + 0.5))
        assert (result.noisy[flipped] == (c + 1) % 5).all()


def test_cifar100_fine_to_coarse_map() -> None:
    mapping = np.asarray(CIFAR100_FINE_TO_COARSE)
    assert mapping.shape == (100,)
    np.testing.assert_array_equal(np.bincount(mapping), np.full(20, 5))
    # apple -> fruit and vegetables, aquarium_fish -> fish, maple_tree -> trees, worm -> invertebrates.
    assert (mapping[0], mapping[1], mapping[47], mapping[99]) == (4, 1, 17, 13)


def test_cifar100_superclass_swaps_two_fine_classes_per_superclass() -> None:
    labels = _balanced(50, 100)
    rate = 0.3
    result = corrupt(labels, "cifar100_superclass", rate, num_classes=100, seed=4)
    _mask_is_exact(labels, result)
    mapping = np.asarray(CIFAR100_FINE_TO_COARSE)
    assert (mapping[result.noisy] == mapping[labels]).all()
    assert result.is_noisy.sum() == 20 * 2 * 15
    for coarse in range(20):
        in_super = mapping[labels] == coarse
        sources = np.unique(labels[in_super & result.is_noisy])
        assert sources.size == 2
        a, b = sources
        assert (result.noisy[(labels == a) & result.is_noisy] == b).all()
        assert (result.noisy[(labels == b) & result.is_noisy] == a).all()
        assert ((labels == a) & result.is_noisy).sum() == 15 == ((labels == b) & result.is_noisy).sum()


def test_matrix_follows_each_row_with_exact_per_class_counts() -> None:
    matrix = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.1, 0.2, 0.7]])
    labels = _balanced(40, 3)
    result = corrupt(labels, "matrix", 0.0, num_classes=3, seed=5, matrix=matrix)
    _mask_is_exact(labels, result)
    for c in range(3):
        counts = np.bincount(result.noisy[labels == c], minlength=3)
        np.testing.assert_array_equal(counts, matrix[c] * 40)


def test_matrix_counts_round_to_the_class_size() -> None:
    matrix = np.full((3, 3), 1 / 3)
    labels = _balanced(10, 3)
    result = corrupt(labels, "matrix", 0, num_classes=3, seed=0, matrix=matrix.tolist())
    for c in range(3):
        counts = np.bincount(result.noisy[labels == c], minlength=3)
        assert counts.sum() == 10 and set(counts) == {3, 4}


# Every generated kind; 'human' reads its labels from a file (tests/test_cifar_n.py), `none` draws nothing.
@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("human", "none")])
def test_deterministic_by_seed_and_independent_of_global_rng(kind: str) -> None:
    num_classes = 100 if kind == "cifar100_superclass" else 6
    labels = _balanced(30, num_classes)
    original = labels.copy()
    kwargs = {"matrix": np.full((6, 6), 1 / 6)} if kind == "matrix" else {}
    rate = 0.0 if kind == "matrix" else 0.4
    np.random.seed(1)
    state = np.random.get_state()
    first = corrupt(labels, kind, rate, num_classes, seed=123, **kwargs)
    assert np.array_equal(np.random.get_state()[1], state[1])
    np.random.seed(999)
    again = corrupt(labels, kind, rate, num_classes, seed=123, **kwargs)
    other = corrupt(labels, kind, rate, num_classes, seed=124, **kwargs)
    np.testing.assert_array_equal(first.noisy, again.noisy)
    np.testing.assert_array_equal(first.is_noisy, again.is_noisy)
    assert not np.array_equal(first.noisy, other.noisy)
    np.testing.assert_array_equal(labels, original)


@pytest.mark.parametrize("kind", ["symmetric", "pairflip", "cifar100_superclass"])
def test_rate_zero_leaves_labels_clean(kind: str) -> None:
    labels = _balanced(5, 100)
    result = corrupt(labels, kind, 0.0, num_classes=100, seed=0)
    np.testing.assert_array_equal(result.noisy, labels)
    assert not result.is_noisy.any()


def test_accepts_lists_and_other_integer_dtypes() -> None:
    result = corrupt([0, 1, 2, 0], "pairflip", 0.5, num_classes=3, seed=0)
    assert result.noisy.dtype == np.int64
    result = corrupt(np.array([0, 1, 1, 0], dtype=np.uint8), "symmetric", 0.5, num_classes=2, seed=0)
    np.testing.assert_array_equal(result.noisy[result.is_noisy], 1 - np.array([0, 1, 1, 0])[result.is_noisy])


ROW_BAD = [[0.5, 0.4], [0.0, 1.0]]
ERRORS = [
    ({"rate": -0.1}, r"noise\.rate = -0\.1 is outside the allowed range \[0, 1\)"),
    ({"rate": 1.0}, r"noise\.rate = 1\.0 is outside the allowed range \[0, 1\)"),
    ({"labels": [0, 1, -1]}, r"labels\[2\] = -1 is outside \[0, 2\)"),
    ({"labels": [0, 2, 1]}, r"labels\[1\] = 2 is outside \[0, 2\)"),
    ({"labels": [0.0, 1.0]}, r"labels must be integer class indices; got dtype float64"),
    ({"labels": [[0, 1]]}, r"labels must be a 1-D array"),
    ({"num_classes": 1, "labels": [0]}, r"num_classes = 1 must be an integer >= 2"),
    ({"kind": "symetric"}, r"unknown noise kind 'symetric'; valid: .*\(did you mean 'symmetric'\?\)"),
    ({"kind": "matrix", "rate": 0.0}, r"noise kind 'matrix' needs noise\.matrix"),
    ({"kind": "matrix", "rate": 0.0, "matrix": ROW_BAD}, r"row-stochastic: row 0 sums to 0\.9, not 1"),
    ({"kind": "matrix", "rate": 0.0, "matrix": [[1.0]]}, r"noise\.matrix must be 2 x 2; got shape \(1, 1\)"),
    ({"kind": "matrix", "rate": 0.0, "matrix": [[1.5, -0.5], [0, 1]]}, r"finite, non-negative"),
    ({"kind": "matrix", "rate": 0.2, "matrix": [[1, 0], [0, 1]]}, r"noise\.rate must be 0 \(got 0\.2\)"),
    ({"kind": "cifar100_superclass"}, r"needs num_classes = 100 \(got 2\)"),
    ({"kind": "pairflip", "allow_true_label": True}, r"noise\.allow_true_label: noise kind 'pairflip' has no option 'allow_true_label'; allowed: \(none\)"),
    ({"matrix": [[1, 0], [0, 1]]}, r"noise\.matrix: noise kind 'symmetric' has no option 'matrix'; allowed: allow_true_label"),
]


@pytest.mark.parametrize(("overrides", "match"), ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_invalid_input_raises_a_clear_error(overrides: dict, match: str) -> None:
    kwargs = {"labels": [0, 1, 1, 0], "kind": "symmetric", "rate": 0.2, "num_classes": 2, "seed": 0}
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=match):
        corrupt(**kwargs)


def test_none_keeps_the_labels_as_given() -> None:
    labels = _balanced(10, 3)
    result = corrupt(labels, "none", 0.0, num_classes=3, seed=0)
    np.testing.assert_array_equal(result.noisy, labels)
    assert not result.is_noisy.any() and result.noisy is not labels
    with pytest.raises(ValueError, match="noise kind 'none' adds no noise; noise.rate must be 0"):
        corrupt(labels, "none", 0.2, num_classes=3, seed=0)
