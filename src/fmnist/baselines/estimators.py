"""Build today's scikit-learn estimator for a grid configuration written for the scikit-learn of 2017.

What changed since the README's ``runner.py`` ran, and how each configuration is mapped (the
result row keeps the original spelling and lists every mapping in ``mapped``):

- ``SGDClassifier(loss="log")``: renamed ``log_loss`` (1.1; the old name removed in 1.3).
- ``GradientBoostingClassifier(loss="deviance")``: renamed ``log_loss`` (removed in 1.3).
- ``LogisticRegression(multi_class=...)``: removed (1.7). ``ovr`` becomes a
  ``OneVsRestClassifier`` of binary ``liblinear`` models (2017's default solver); ``multinomial``
  uses a solver that fits the multinomial loss itself: ``lbfgs`` for l2, ``saga`` for l1.
  ``penalty`` is deprecated since 1.8: l1/l2 become ``l1_ratio`` 1/0 there.
- ``PassiveAggressiveClassifier``: deprecated since 1.8; it is ``SGDClassifier(loss="hinge",
  penalty=None, learning_rate="pa1", eta0=C)``, which is what the old class built internally.
- ``MLPClassifier(hidden_layer_sizes="(10,10,)")``: the grid stores tuples as strings.

Grid-level parameters, not the estimator's (used by ``additions.json``): ``pca_whiten=N`` puts
``PCA(n_components=N, whiten=True)`` in front of the estimator (a ``Pipeline``), so a grid line can
say "SVC on PCA-whitened inputs" and the row keeps that spelling.

A configuration that scikit-learn rejects (``LinearSVC(loss="hinge", penalty="l1")``) is found by
:func:`sanity_check`, the original runner's check (a fit on a handful of images), and is reported
as skipped with scikit-learn's reason. A Gaussian process on 60,000 images would need hundreds of
GiB; :func:`memory_estimate` says how much so the runner refuses it instead of trying.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# scikit-learn is imported inside the functions: `fmnist --help` imports this module (through the
# runner), and the core install has no scikit-learn.
# Grid name -> "module:Class". A grid may also name any importable estimator as "module:Class".
ESTIMATORS = {
    "PassiveAggressiveClassifier": "sklearn.linear_model:PassiveAggressiveClassifier",
    "SGDClassifier": "sklearn.linear_model:SGDClassifier",
    "Perceptron": "sklearn.linear_model:Perceptron",
    "DecisionTreeClassifier": "sklearn.tree:DecisionTreeClassifier",
    "RandomForestClassifier": "sklearn.ensemble:RandomForestClassifier",
    "LogisticRegression": "sklearn.linear_model:LogisticRegression",
    "MLPClassifier": "sklearn.neural_network:MLPClassifier",
    "KNeighborsClassifier": "sklearn.neighbors:KNeighborsClassifier",
    "SVC": "sklearn.svm:SVC",
    "GaussianNB": "sklearn.naive_bayes:GaussianNB",
    "ExtraTreeClassifier": "sklearn.tree:ExtraTreeClassifier",
    "GaussianProcessClassifier": "sklearn.gaussian_process:GaussianProcessClassifier",
    "GradientBoostingClassifier": "sklearn.ensemble:GradientBoostingClassifier",
    "LinearSVC": "sklearn.svm:LinearSVC",
    # Today's scikit-learn beside 2017's (additions.json):
    "HistGradientBoostingClassifier": "sklearn.ensemble:HistGradientBoostingClassifier",
}
PCA_WHITEN = "pca_whiten"  # grid-level parameter: PCA(n_components=value, whiten=True) before the estimator

# (estimator, parameter, old value) -> today's value.
RENAMED_VALUES = {
    ("SGDClassifier", "loss", "log"): "log_loss",
    ("GradientBoostingClassifier", "loss", "deviance"): "log_loss",
}

# A Gaussian process classifier fit (Laplace approximation, kernel gradient for the optimiser)
# holds at least this many float64 n x n matrices at once per binary problem: the kernel, the
# scaled kernel, B = I + W^1/2 K W^1/2, its Cholesky factor, and the two-parameter kernel gradient.
GP_SQUARE_MATRICES = 6


class CannotBuild(ValueError):
    """The configuration cannot be turned into an estimator; the message is the reason."""


@dataclass(frozen=True)
class Built:
    estimator: Any  # an unfitted scikit-learn estimator
    mapped: tuple[str, ...]  # each rename or substitution, "old -> new", for the result row


def sklearn_version() -> tuple[int, int]:
    import sklearn

    major, minor = sklearn.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def resolve(name: str) -> type:
    """The estimator class for a grid name (a known scikit-learn name or "module:Class")."""
    target = ESTIMATORS.get(name, name)
    if ":" not in target:
        raise CannotBuild(f"unknown estimator {name!r}; name a scikit-learn classifier or module:Class")
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise CannotBuild(f"cannot import {target}: {exc}") from None
    return obj


def _value(value: Any) -> Any:
    """Tuples are stored as strings in the grid (``"(100,10,)"``), as the original parser assumed."""
    if isinstance(value, str) and value.startswith("("):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise CannotBuild(f"cannot parse {value!r} as a tuple") from None
    return value


def translate(name: str, parameters: dict[str, Any]) -> tuple[str, dict[str, Any], bool, list[str]]:
    """Map a 2017 configuration to ``(estimator name, keyword arguments, one_vs_rest, notes)``.

    ``one_vs_rest``: the estimator must be wrapped in a ``OneVsRestClassifier``; ``notes`` say
    what changed. Imports nothing but scikit-learn's version.
    """
    kwargs = {k: _value(v) for k, v in parameters.items()}
    notes = [
        f"{k}={v!r} -> {kwargs[k]!r}" for k, v in parameters.items() if kwargs[k] is not v and kwargs[k] != v
    ]
    one_vs_rest = False
    for param, value in list(kwargs.items()):
        new = RENAMED_VALUES.get((name, param, value)) if isinstance(value, str) else None
        if new is not None:
            kwargs[param] = new
            notes.append(f"{param}={value!r} -> {new!r}")
    try:
        major_minor = sklearn_version()
    except ImportError:
        major_minor = (1, 8)
    if name == "PassiveAggressiveClassifier" and major_minor >= (1, 8):
        c = kwargs.pop("C", 1.0)
        kwargs = {"loss": "hinge", "penalty": None, "learning_rate": "pa1", "eta0": c, **kwargs}
        notes.append(
            f"PassiveAggressiveClassifier(C={c!r}) -> SGDClassifier(loss='hinge', penalty=None, learning_rate='pa1', eta0={c!r})"
        )
        name = "SGDClassifier"
    if name == "LogisticRegression":
        multi = kwargs.pop("multi_class", None)
        penalty = kwargs.get("penalty", "l2")
        if multi == "ovr":
            one_vs_rest = True
            kwargs.setdefault("solver", "liblinear")
            notes.append("multi_class='ovr' -> OneVsRestClassifier(LogisticRegression(solver='liblinear'))")
        elif multi == "multinomial":
            solver = "saga" if penalty in ("l1", "elasticnet") else "lbfgs"
            kwargs.setdefault("solver", solver)
            notes.append(f"multi_class='multinomial' -> solver={kwargs['solver']!r} (multinomial loss)")
        elif multi is not None:
            raise CannotBuild(f"LogisticRegression: unknown multi_class {multi!r}")
        if "penalty" in kwargs and major_minor >= (1, 8):
            ratio = {"l1": 1.0, "l2": 0.0}.get(penalty)
            if ratio is None:
                raise CannotBuild(f"LogisticRegression: unknown penalty {penalty!r}")
            del kwargs["penalty"]
            kwargs["l1_ratio"] = ratio
            notes.append(f"penalty={penalty!r} -> l1_ratio={ratio}")
    return name, kwargs, one_vs_rest, notes


def build_estimator(name: str, parameters: dict[str, Any]) -> Built:
    """An unfitted estimator for one grid configuration; :class:`CannotBuild` says why not."""
    parameters = dict(parameters)
    whiten = parameters.pop(PCA_WHITEN, None)
    target, kwargs, one_vs_rest, notes = translate(name, parameters)
    cls = resolve(target)
    try:
        estimator = cls(**kwargs)
    except TypeError as exc:
        raise CannotBuild(f"{target}: {exc}") from None
    if one_vs_rest:
        from sklearn.multiclass import OneVsRestClassifier

        estimator = OneVsRestClassifier(estimator)
    if whiten is not None:
        if isinstance(whiten, bool) or not isinstance(whiten, int) or whiten < 1:
            raise CannotBuild(f"{PCA_WHITEN} must be a positive number of components, not {whiten!r}")
        from sklearn.decomposition import PCA
        from sklearn.pipeline import Pipeline

        estimator = Pipeline([("pca", PCA(n_components=whiten, whiten=True)), ("model", estimator)])
    return Built(estimator, tuple(notes))


def describe(estimator: Any) -> str:
    """The estimator as one line of Python, showing the parameters that differ from the defaults."""
    return " ".join(repr(estimator).split())


def sanity_check(estimator: Any, images: np.ndarray, labels: np.ndarray) -> str | None:
    """Fit a copy on two images per class, as the original runner did; the error message, or None.

    This finds combinations scikit-learn rejects only at fit time (``LinearSVC`` hinge + l1)
    before any time is spent on the real fit.
    """
    from sklearn.base import clone

    picks = np.concatenate([np.flatnonzero(labels == c)[:2] for c in np.unique(labels)])
    probe = clone(estimator)
    pca = getattr(probe, "named_steps", {}).get("pca")
    if pca is not None and isinstance(pca.n_components, int):  # a handful of images has fewer components
        pca.set_params(n_components=min(pca.n_components, len(picks)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe.fit(images[picks], labels[picks])
    except (ValueError, TypeError, NotImplementedError) as exc:
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return None


def memory_estimate(name: str, parameters: dict[str, Any], class_counts: Sequence[int]) -> int | None:
    """Bytes a fit needs beyond the data, where that grows faster than the data; else None.

    Only the Gaussian process qualifies: its kernel matrices are n x n per binary problem, n being
    all training images (one-vs-rest) or two classes' images (one-vs-one).
    """
    if name.rsplit(":", 1)[-1] != "GaussianProcessClassifier":
        return None
    counts = sorted((int(c) for c in class_counts), reverse=True)
    if parameters.get("multi_class", "one_vs_rest") == "one_vs_one" and len(counts) > 2:
        n = counts[0] + counts[1]
    else:
        n = sum(counts)
    return GP_SQUARE_MATRICES * n * n * 8
