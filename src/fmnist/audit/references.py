"""Published mislabelled Fashion-MNIST training images, and where the audit's ranking puts them.

An independent check of the label-error ranking: images that other people looked at and called
mislabelled should come near the top. Indices are positions in the training split as
``train-images-idx3-ubyte`` stores it (0-based, the order every loader keeps), unless a comment says
the source does not state its base.

Only indices read in the source are listed; nothing here is reconstructed from memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

# Müller & Markert, "Identifying Mislabeled Instances in Classification Datasets", arXiv 1912.05283
# (IJCNN 2019), Table 7: 64 mislabelled Fashion-MNIST training images. NOT FOUND: the stored copies of
# the paper reachable from this project's search tool (ar5iv.labs.arxiv.org/html/1912.05283,
# docslib.org, scribd) return only the opening of the paper, never the table on its last page. Left
# empty rather than guessed; fill it in from the paper's Table 7 (and say whether it is 0-based).
MULLER_MARKERT_TABLE7: tuple[int, ...] = ()

# The same authors' examples, "taken directly from the paper": github.com/zalandoresearch/fashion-mnist
# issue #166 ("Mislabeled Instances Found", mueller91, 2020-11-19) shows images headed by "the instance
# number in the training set". The stored copy of the issue is cut after these six. The issue does not
# say whether the numbers are 0-based (the authors load the data with tf.keras, which is 0-based).
MULLER_MARKERT_ISSUE166: tuple[int, ...] = (45592, 16691, 28264, 33982, 40513, 42018)

# The authors' code, github.com/mueller91/labelfix: ``src/examples/find_in_fashion_mnist.py`` (commit 606128c)
# checks its flagged images against this hard-coded list of mislabelled training images (indices into
# ``tf.keras.datasets.fashion_mnist`` training order: the repository's ``preprocess_x_y_and_shuffle`` does not
# reorder the images). Not shown to be Table 7; no labels are given.
MULLER_MARKERT_LABELFIX_CODE: tuple[int, ...] = (
    3415, 28264, 29599, 37286, 36049, 9059, 18188, 1600, 34381, 22750, 39620, 50494, 38208, 53257,
)  # fmt: skip

# The same repository's README shows four examples by index (45592, 28264, 33982, 42018, all in issue #166's
# six) and its folder ``doc/imgs/fashion_mnist/`` holds one more, 22264.png.
MULLER_MARKERT_REPO_IMAGE = 22264

# github.com/zalandoresearch/fashion-mnist issue #184 ("Image of full body in trainingset", buehlpa,
# 2023-08-03): "image 36325 in the training set with class: shirt", shown with
# ``fashion_mnist.load_data()`` and ``x_train[36325]``: 0-based.
ISSUE184_FULL_BODY = 36325

# The data sets whose training split these indices refer to (``DatasetSpec.title``).
REFERENCE_DATASET = "Fashion-MNIST"


def published_training_errors() -> dict[str, tuple[int, ...]]:
    """The reference sets by source (empty ones included, so a report says what was not found)."""
    table7 = tuple(MULLER_MARKERT_TABLE7)
    authors = (*MULLER_MARKERT_ISSUE166, *MULLER_MARKERT_LABELFIX_CODE, MULLER_MARKERT_REPO_IMAGE)
    union = tuple(sorted({*table7, *authors, ISSUE184_FULL_BODY}))
    return {
        "muller_markert_table7": table7,
        "muller_markert_issue166": MULLER_MARKERT_ISSUE166,
        "muller_markert_labelfix_code": MULLER_MARKERT_LABELFIX_CODE,
        "muller_markert_repo_image": (MULLER_MARKERT_REPO_IMAGE,),
        "fashion_mnist_issue184": (ISSUE184_FULL_BODY,),
        "all": union,
    }


def ranks_of(rows: Iterable[Mapping], split: str = "train") -> dict[int, int]:
    """{index within ``split``: rank} from the audit's ranked rows (``rank``, ``split``, ``index``)."""
    return {int(r["index"]): int(r["rank"]) for r in rows if r["split"] == split}


def compare_with_references(
    rows: Sequence[Mapping],
    references: Mapping[str, Sequence[int]] | None = None,
    tops: Sequence[int] = (100, 1000),
    split: str = "train",
) -> dict:
    """How many of each reference set the ranking puts in its top k, and the rank of each one.

    ``scored`` counts the references that were scored at all (a --limit run scores only the first
    images); a reference that was not scored has rank None.
    """
    references = published_training_errors() if references is None else references
    rank = ranks_of(rows, split)
    out: dict = {}
    for name, indices in references.items():
        ranks = {str(int(i)): rank.get(int(i)) for i in indices}
        found = [r for r in ranks.values() if r is not None]
        out[name] = {
            "indices": len(ranks),
            "scored": len(found),
            **{f"top{k}": sum(r <= k for r in found) for k in tops},
            "ranks": ranks,
        }
    return out
