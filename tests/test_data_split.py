"""The seeded, stratified validation split carved from the training set."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.data import stratified_split
from fmnist.errors import DataError

BALANCED = np.random.default_rng(0).permutation(np.repeat(np.arange(10, dtype=np.uint8), 6000))
UNEVEN = np.random.default_rng(1).permutation(np.repeat(np.arange(5, dtype=np.uint8), [700, 13, 250, 1, 36]))


def check_split(labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, n_val: int) -> None:
    n = len(labels)
    assert len(val_idx) == n_val and len(train_idx) == n - n_val
    assert np.all(np.diff(val_idx) > 0) and np.all(np.diff(train_idx) > 0)  # sorted, no repeats
    assert np.intersect1d(train_idx, val_idx).size == 0  # disjoint
    np.testing.assert_array_equal(np.union1d(train_idx, val_idx), np.arange(n))  # covering
    classes, counts = np.unique(labels, return_counts=True)
    val_counts = np.array([np.sum(labels[val_idx] == c) for c in classes])
    exact = counts * n_val / n
    assert np.all(val_counts >= np.floor(exact)) and np.all(val_counts <= np.ceil(exact))  # proportional


@pytest.mark.parametrize(
    "labels, val_size, n_val",
    [
        (BALANCED, 5000, 5000),
        (BALANCED, 0.1, 6000),
        (BALANCED, 1234, 1234),
        (BALANCED, 0, 0),
        (BALANCED, 59_999, 59_999),
        (UNEVEN, 100, 100),
        (UNEVEN, 0.5, 500),
        (UNEVEN, 3, 3),
    ],
)
def test_sizes_proportions_disjoint_covering(labels, val_size, n_val):
    train_idx, val_idx = stratified_split(labels, val_size, seed=0)
    check_split(labels, train_idx, val_idx, n_val)


def test_balanced_split_is_exactly_even():
    _, val_idx = stratified_split(BALANCED, 5000, seed=3)
    assert np.bincount(BALANCED[val_idx]).tolist() == [500] * 10


def test_seeded_and_repeatable():
    a = stratified_split(BALANCED, 6000, seed=7)
    b = stratified_split(BALANCED, 6000, seed=7)
    c = stratified_split(BALANCED, 6000, seed=8)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_largest_remainder_counts_do_not_depend_on_class_ids():
    """77 of 1,000: exact shares 53.9, 1.001, 19.25, 0.077, 2.772 -> 54, 1, 19, 0, 3, whatever the ids."""
    relabelled = (9 - UNEVEN.astype(int)).astype(np.uint8)  # classes 0..4 become 9..5
    _, v1 = stratified_split(UNEVEN, 77, seed=0)
    _, v2 = stratified_split(relabelled, 77, seed=0)
    assert np.bincount(UNEVEN[v1], minlength=5).tolist() == [54, 1, 19, 0, 3]
    assert np.bincount(relabelled[v2], minlength=10)[::-1][:5].tolist() == [54, 1, 19, 0, 3]


@pytest.mark.parametrize("val_size", [60_000, 70_000, -1, 1.0, 1.5, -0.1])
def test_sizes_that_do_not_fit(val_size):
    with pytest.raises(DataError, match="does not fit 60000"):
        stratified_split(BALANCED, val_size)


def test_empty_labels():
    with pytest.raises(DataError):
        stratified_split(np.array([], dtype=np.uint8), 0)
