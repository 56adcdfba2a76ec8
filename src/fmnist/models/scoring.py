"""Top-1 accuracy: the one rule every stage scores with (numpy arrays or torch tensors, no torch import).

A prediction is the class with the largest score; logits and probabilities give the same answer.
It lives with the models, upstream of training and evaluation, so both use it without one stage
importing the other.
"""

from __future__ import annotations


def correct(scores, labels):
    """How many rows of ``scores`` (n, classes) peak at their label: a tensor (no host sync) or an integer."""
    return (scores.argmax(1) == labels).sum()


def accuracy(scores, labels) -> float:
    """The fraction of rows of ``scores`` (n, classes; logits or probabilities) that peak at ``labels`` (n,).

    Counted exactly (correct / n in float64); NaN when there are no labels.
    """
    n = len(labels)
    return float(correct(scores, labels)) / n if n else float("nan")
