"""The audit's cross-checks: cleanlab on the same probabilities, the saved npz, the published errors.

All on synthetic probability matrices (no training): seconds in all.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
from cleanlab.filter import find_label_issues

from fmnist.audit import report
from fmnist.audit.labels import (
    OOF_FILE,
    LabelScores,
    cleanlab_agreement,
    load_probabilities,
    save_probabilities,
)
from fmnist.audit.references import (
    ISSUE184_FULL_BODY,
    MULLER_MARKERT_LABELFIX_CODE,
    MULLER_MARKERT_TABLE7,
    compare_with_references,
    published_training_errors,
)
from fmnist.errors import DataError

CLASSES = tuple(f"c{i}" for i in range(10))

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def noisy_probs(n: int, n_flips: int, seed: int) -> tuple[LabelScores, np.ndarray]:
    """Probabilities that favour each image's true class (with some confusion), and labels with
    ``n_flips`` flipped: a model that learned the true classes, scoring a set with known errors."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % 10
    rng.shuffle(true)
    alpha = np.full((n, 10), 0.3)
    alpha[np.arange(n), true] = rng.uniform(6.0, 30.0, n)  # some images confidently right, some not
    probs = np.stack([rng.dirichlet(a) for a in alpha]).astype(np.float32)
    flips = rng.choice(n, n_flips, replace=False)
    given = true.copy()
    given[flips] = (true[flips] + rng.integers(1, 10, n_flips)) % 10
    return LabelScores(probs, given.astype(np.int64), np.zeros(n, np.int64)), flips


def test_cleanlab_agreement_matches_a_direct_cleanlab_call():
    scores, flips = noisy_probs(2000, 40, seed=0)
    got = cleanlab_agreement(scores, tops=(20, 100))
    direct = set(
        find_label_issues(
            scores.labels, scores.probs, return_indices_ranked_by="self_confidence", n_jobs=1
        ).tolist()
    )
    mine = set(np.flatnonzero(scores.flagged()).tolist())
    top = scores.ranking()
    assert got["cleanlab_flagged"] == len(direct) and got["audit_flagged"] == len(mine)
    assert got["overlap"] == len(mine & direct)
    assert got["jaccard"] == round(len(mine & direct) / len(mine | direct), 4)
    assert got["audit_top20_in_cleanlab"] == len(set(top[:20].tolist()) & direct)
    assert got["audit_top100_in_cleanlab"] == len(set(top[:100].tolist()) & direct)
    # Both methods find planted flips only (no false flags), and most of them (32 and 28 of 40 here):
    # the check is not comparing two empty sets.
    assert direct <= set(flips.tolist()) and mine <= set(flips.tolist())
    assert len(direct) >= 25 and len(mine) >= 25
    assert 0 < got["jaccard"] < 1 and got["audit_top20_in_cleanlab"] >= 15  # 18 here


def test_cleanlab_missing_gives_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)  # import raises ModuleNotFoundError
    scores, _ = noisy_probs(200, 5, seed=1)
    assert cleanlab_agreement(scores) is None
    notes = []
    assert report.cleanlab_summary(scores, notes.append) is None
    assert len(notes) == 1 and "cleanlab not installed" in notes[0]


def test_probabilities_npz_round_trip(tmp_path):
    scores, _ = noisy_probs(50, 3, seed=2)
    split = np.array(["train"] * 30 + ["t10k"] * 20)
    index = np.r_[np.arange(30), np.arange(20)]
    path = save_probabilities(tmp_path / OOF_FILE, scores, split, index)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["probs"].dtype == np.float32 and npz["probs"].shape == (50, 10)
        np.testing.assert_array_equal(npz["probs"], scores.probs)
        np.testing.assert_array_equal(npz["labels"], scores.labels)
        np.testing.assert_array_equal(npz["index"], index)
    back, back_split, back_index = load_probabilities(path)
    np.testing.assert_array_equal(back.probs, scores.probs)
    assert back_split.tolist() == split.tolist() and back_index.tolist() == index.tolist()
    assert [p.name for p in tmp_path.iterdir()] == [OOF_FILE]  # no temporary file left behind
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not an audit probability file"):
        load_probabilities(tmp_path / "junk.npz")


def rows_of(order: list[tuple[str, int]]) -> list[dict]:
    return [{"rank": r, "split": s, "index": i} for r, (s, i) in enumerate(order, start=1)]


def test_reference_hits_counted():
    rows = rows_of([("train", 7), ("t10k", 5), ("train", 5), ("train", 3), ("train", 9), ("train", 1)])
    refs = {"a": [5, 9, 1], "b": [7], "missing": [5, 42]}
    got = compare_with_references(rows, refs, tops=(3, 5))
    assert got["a"] == {"indices": 3, "scored": 3, "top3": 1, "top5": 2, "ranks": {"5": 3, "9": 5, "1": 6}}
    assert got["b"]["top3"] == 1 and got["b"]["ranks"] == {"7": 1}
    # t10k image 5 (rank 2) is not training image 5; 42 was not scored.
    assert got["missing"] == {"indices": 2, "scored": 1, "top3": 1, "top5": 1, "ranks": {"5": 3, "42": None}}


def test_published_indices_are_training_indices():
    refs = published_training_errors()
    assert ISSUE184_FULL_BODY == 36325 and ISSUE184_FULL_BODY in refs["all"]
    assert len(set(MULLER_MARKERT_TABLE7)) == len(MULLER_MARKERT_TABLE7)
    assert len(set(MULLER_MARKERT_LABELFIX_CODE)) == 14 and set(MULLER_MARKERT_LABELFIX_CODE) <= set(
        refs["all"]
    )
    # 28264 is in both of the authors' lists; the union counts it once: 6 + 14 + 1 + 1 - 1.
    assert len(refs["all"]) == 21
    assert all(0 <= i < 60_000 for i in refs["all"])


def test_audit_records_cleanlab_npz_and_references(tmp_path, monkeypatch):
    """Through ``audit``: fold training replaced by fixed probabilities; the JSON, markdown and npz agree."""
    rng = np.random.default_rng(3)
    n_train, n_test = 300, 100
    splits = {
        "train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), None),
        "t10k": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), None),
    }
    scores, _ = noisy_probs(n_train + n_test, 12, seed=4)
    splits = {
        "train": (splits["train"][0], scores.labels[:n_train].astype(np.uint8)),
        "t10k": (splits["t10k"][0], scores.labels[n_train:].astype(np.uint8)),
    }
    monkeypatch.setattr(report, "cross_validated_scores", lambda *a, **k: scores)
    ranking = scores.ranking().tolist()
    first_train = next(k for k, i in enumerate(ranking) if i < n_train)  # pooled = training index there
    top_index = ranking[first_train]
    refs = {"planted": [top_index, 250], "fashion_mnist_issue184": [36325]}
    monkeypatch.setattr(report, "compare_with_references", lambda rows: compare_with_references(rows, refs))
    summary = report.audit(splits, CLASSES, tmp_path, title="Fashion-MNIST (synthetic)", log=None)
    le = json.loads((tmp_path / "audit.json").read_text())["label_errors"]
    assert le == json.loads(json.dumps(summary["label_errors"]))
    direct = find_label_issues(
        scores.labels, scores.probs, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    assert le["cleanlab"]["cleanlab_flagged"] == len(direct) > 0
    assert le["cleanlab"]["audit_top100_in_cleanlab"] == len(
        set(scores.ranking()[:100].tolist()) & set(direct)
    )
    planted = le["references"]["planted"]
    assert planted["ranks"][str(top_index)] == first_train + 1 and planted["scored"] == 2
    assert planted["ranks"]["250"] == ranking.index(250) + 1
    assert le["references"]["fashion_mnist_issue184"]["ranks"] == {"36325": None}
    back, split, index = load_probabilities(tmp_path / le["probabilities_file"])
    np.testing.assert_array_equal(back.probs, scores.probs)
    assert (split == "train").sum() == n_train and index[n_train:].tolist() == list(range(n_test))
    md = (tmp_path / "audit.md").read_text()
    assert "### Against cleanlab" in md and f"cleanlab {le['cleanlab']['cleanlab_flagged']:,}" in md
    assert "Training image 36325 (fashion-mnist issue #184, a full-body image) was not scored" in md


def test_audit_skips_references_for_other_data_sets(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    scores, _ = noisy_probs(120, 4, seed=6)
    splits = {
        "train": (rng.integers(0, 256, (100, 28, 28), dtype=np.uint8), scores.labels[:100]),
        "t10k": (rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), scores.labels[100:]),
    }
    monkeypatch.setattr(report, "cross_validated_scores", lambda *a, **k: scores)
    summary = report.audit(splits, CLASSES, tmp_path, title="MNIST", log=None)
    assert summary["label_errors"]["references"] is None
    assert "Against published" not in (tmp_path / "audit.md").read_text()


def test_cleanlab_warnings_go_into_the_summary_not_the_terminal():
    """A --limit run has classes of a few images: cleanlab warns; the warning is recorded, not printed."""
    scores, _ = noisy_probs(12, 1, seed=7)  # most classes hold one image
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping would fail the test
        got = cleanlab_agreement(scores)
    assert any("too few examples" in w for w in got["warnings"]), got["warnings"]
