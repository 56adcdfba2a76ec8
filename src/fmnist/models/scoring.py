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


def ensemble(member_probs):
    """The ensemble's probabilities: the mean of its members' softmax outputs (numpy arrays or tensors).

    One rule for every ensemble here (the sweep's best runs, `bench cnn`'s seeds): averaging
    probabilities, not logits, so a member's over-confident logits cannot outvote the others.
    """
    if not len(member_probs):
        raise ValueError("an ensemble needs at least one member")
    return sum(member_probs[1:], member_probs[0]) / len(member_probs)
