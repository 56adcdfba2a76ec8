"""What a result row says about itself, for the report's table and chart: its size, kind, machine, timing.

Rows come from the 2017 grid (full size or a quick pass), today's additions, or another benchmark (a
CNN's); these helpers read each kind the same way, older rows without ``machine`` or ``n_train`` included.
"""

from __future__ import annotations

from collections.abc import Iterable

from fmnist.baselines.published import published_for
from fmnist.data.registry import DATASETS


def dataset_title(name: str) -> str:
    spec = DATASETS.get(name)
    return spec.title if spec is not None else name


def datasets_of(rows: Iterable[dict]) -> list[str]:
    """Data sets in display order: Fashion-MNIST, MNIST, then the others by name."""
    names = {r["dataset"] for r in rows}
    return [d for d in ("fashion", "mnist") if d in names] + sorted(names - {"fashion", "mnist"})


def training_images(row: dict) -> int | None:
    """Images the row's model was trained on: recorded (``n_train``), else the subsample, else unknown."""
    n = row.get("n_train") or row.get("subsample")
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def size_label(row: dict) -> str:
    """``"60,000 (full)"``, ``"2,000 (quick)"``; ``"full"`` for a full-size row that does not say its size."""
    n, quick = training_images(row), row.get("subsample") is not None
    if n is None:
        return "full"
    return f"{n:,} ({'quick' if quick else 'full'})"


def is_sklearn(row: dict) -> bool:
    return row.get("source", "sklearn") == "sklearn"


def kind(row: dict) -> str:
    """What produced the row: ``2017 grid``, ``addition`` (today's scikit-learn) or the other benchmark (``CNN``)."""
    if not is_sklearn(row):
        return str(row.get("source") or "other").upper()
    return "addition" if row.get("addition") else "2017 grid"


def tags(row: dict) -> list[str]:
    """The dashboard's kind filter: full / quick, the kind, and table3 for the paper's configurations."""
    out = ["quick" if row.get("subsample") is not None else "full"]
    out.append("grid" if kind(row) == "2017 grid" else kind(row).lower())
    if published_for(row) is not None:
        out.append("table3")
    return out


def machine_of(row: dict) -> str:
    """Where the row ran: its machine line, else its host name (rows from before ``machine``), else ""."""
    return row.get("machine") or (f"host {row['host']}" if row.get("host") else "")


def family_label(row: dict) -> str:
    """The family, with additions apart: today's default LogisticRegression is not a 2017 configuration."""
    fam = row.get("family", row["name"])
    return f"{fam} (addition)" if row.get("addition") else fam


def params_text(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(defaults)"


def finished(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "done" and r.get("mean_accuracy") is not None]


def wall_seconds(row: dict) -> float | None:
    return row.get("train_seconds") if row.get("train_seconds") is not None else row.get("time_per_repeat")


def seconds_of(row: dict) -> float | None:
    """Training seconds per repeat for ranking and plotting: CPU seconds where measured, else wall.

    The scikit-learn jobs run one thread each, so their CPU time is what the fit costs; their wall
    time on a shared machine also counts the other users' work. Rows from elsewhere (a CNN's)
    bring wall seconds only.
    """
    cpu = row.get("train_cpu_seconds")
    return cpu if cpu is not None else wall_seconds(row)
