"""``fmnist bench report``: one self-contained HTML dashboard of every result row, readable offline.

The page embeds its data (JSON) and its code (plain JavaScript, :file:`dashboard.js`); the scatter
plots are matplotlib's SVG, inline. No CDN, no font or script from anywhere: it opens from a file on
a machine without network. Rows are grouped by configuration (name, parameters, training size) so
Fashion-MNIST and MNIST results of the same configuration sit side by side.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from fmnist.baselines.results import ResultsError, latest, read_results
from fmnist.data.registry import DATASETS
from fmnist.fsio import write_text

SVG, XLINK = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
PALETTE = (  # 16 distinguishable colours, one per family in first-seen order (then they repeat)
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#ad494a",
    "#637939",
    "#843c39",
    "#7b4173",
    "#3182bd",
)


def load_rows(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """Rows of every file, the last row per key winning (a later file or a retried job)."""
    rows: list[dict] = []
    for path in paths:
        if not Path(path).exists():
            raise ResultsError(f"{path}: results file not found")
        rows.extend(read_results(path))
    return list(latest(rows).values())


def dataset_title(name: str) -> str:
    spec = DATASETS.get(name)
    return spec.title if spec is not None else name


def datasets_of(rows: Iterable[dict]) -> list[str]:
    """Data sets in display order: Fashion-MNIST, MNIST, then the others by name."""
    names = {r["dataset"] for r in rows}
    return [d for d in ("fashion", "mnist") if d in names] + sorted(names - {"fashion", "mnist"})


def size_label(row: dict) -> str:
    n = row.get("subsample")
    return "full" if n is None else f"quick {n:,}"


def params_text(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(defaults)"


def _done(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "done" and r.get("mean_accuracy") is not None]


def best_per_family(rows: Iterable[dict], dataset: str) -> list[dict]:
    """The most accurate finished row of each family on ``dataset``, best first."""
    best: dict[str, dict] = {}
    for r in _done(rows):
        if r["dataset"] != dataset:
            continue
        old = best.get(r["family"])
        if old is None or r["mean_accuracy"] > old["mean_accuracy"]:
            best[r["family"]] = r
    return sorted(best.values(), key=lambda r: -r["mean_accuracy"])


def _wall(row: dict) -> float | None:
    return row.get("train_seconds") if row.get("train_seconds") is not None else row.get("time_per_repeat")


def _seconds(row: dict) -> float | None:
    """Training seconds per repeat for ranking and plotting: CPU seconds where measured, else wall.

    The scikit-learn jobs run one thread each, so their CPU time is what the fit costs; their wall
    time on a shared machine also counts the other users' work. Rows from elsewhere (a CNN's)
    bring wall seconds only.
    """
    cpu = row.get("train_cpu_seconds")
    return cpu if cpu is not None else _wall(row)


def _fmt_seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def best_per_family_markdown(rows: Sequence[dict]) -> str:
    """The best configuration per family as a Markdown table per data set (for RESULTS.md)."""
    out = []
    for ds in datasets_of(rows):
        out.append(f"{dataset_title(ds)}:\n")
        out.append(
            "| family | best configuration | accuracy (mean ± std, repeats) | train CPU s / repeat "
            "| train wall s / repeat | training images |"
        )
        out.append("|---|---|---|---|---|---|")
        for r in best_per_family(rows, ds):
            out.append(
                f"| {r['family']} | {params_text(r['parameters'])} | {r['mean_accuracy']:.4f} ± "
                f"{r['std_accuracy'] or 0:.4f} ({r['repeats']}) | {_fmt_seconds(r.get('train_cpu_seconds'))} | "
                f"{_fmt_seconds(_wall(r))} | {size_label(r)} |"
            )
        out.append("")
    return "\n".join(out) if out else "(no results)"


# --------------------------------------------------------------------------- table data


def table_data(rows: Sequence[dict]) -> dict:
    """The embedded JSON: columns, and one row per configuration with a cell group per data set."""
    datasets = datasets_of(rows)
    groups: dict[tuple, dict] = {}
    for r in rows:
        gkey = (r["name"], json.dumps(r.get("parameters", {}), sort_keys=True), size_label(r))
        g = groups.setdefault(
            gkey,
            {
                "name": r["name"],
                "family": r.get("family", r["name"]),
                "params": params_text(r.get("parameters", {})),
                "size": size_label(r),
                "_status": [],
            },
        )
        i = datasets.index(r["dataset"])
        g[f"acc{i}"] = r.get("mean_accuracy")
        g[f"std{i}"] = r.get("std_accuracy")
        g[f"rep{i}"] = r.get("repeats")
        g[f"secs{i}"] = _wall(r)
        g[f"cpu{i}"] = r.get("train_cpu_seconds")
        g[f"status{i}"] = r.get("status")
        g[f"reason{i}"] = r.get("reason", "")
        g["_status"].append(r.get("status"))
    out_rows = []
    for g in groups.values():
        statuses = g.pop("_status")
        g["any_done"] = "done" in statuses
        g["all_done"] = all(s == "done" for s in statuses) and len(statuses) == len(datasets)
        out_rows.append(g)
    columns = [
        {"key": "name", "label": "Name", "numeric": False},
        {"key": "params", "label": "Parameters", "numeric": False},
        {"key": "size", "label": "Training images", "numeric": False},
    ]
    for i, ds in enumerate(datasets):
        t = dataset_title(ds)
        columns += [
            {"key": f"acc{i}", "label": f"{t} accuracy", "numeric": True, "format": "acc"},
            {"key": f"std{i}", "label": "± std", "numeric": True, "format": "acc"},
            {"key": f"rep{i}", "label": "repeats", "numeric": True},
            {"key": f"secs{i}", "label": "wall s", "numeric": True, "format": "seconds"},
            {"key": f"cpu{i}", "label": "CPU s", "numeric": True, "format": "seconds"},
            {"key": f"status{i}", "label": "status", "numeric": False},
        ]
    return {"rows": out_rows, "columns": columns, "default_sort": "acc0" if datasets else "name"}


# --------------------------------------------------------------------------- scatter (matplotlib's SVG)


def family_colours(rows: Iterable[dict]) -> dict[str, str]:
    fams = list(dict.fromkeys(r.get("family", r["name"]) for r in rows))
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(fams)}


def scatter_svg(rows: Sequence[dict], dataset: str, colours: dict[str, str]) -> str:
    """Accuracy (y) against training seconds per repeat (x, log) of ``dataset``'s finished rows.

    Matplotlib's SVG, made fit to sit inline in the page: one ``g.point`` per row with its
    configuration as a tooltip (``<title>``), no namespaces, metadata or group ids.
    """
    points = [(r, s) for r in _done(rows) if r["dataset"] == dataset and (s := _seconds(r)) is not None]
    fig = Figure(figsize=(4.8, 3.3))
    ax = fig.add_subplot()
    tips = {}
    for i, (r, secs) in enumerate(points):
        gid = f"point-{i}"
        colour = colours.get(r.get("family", r["name"]), "#333")
        ax.plot([max(secs, 1e-3)], [r["mean_accuracy"]], "o", ms=5, color=colour, alpha=0.75, gid=gid)
        tips[gid] = (
            f"{r['name']} {params_text(r['parameters'])}: {r['mean_accuracy']:.4f}, {secs:.2f} s ({size_label(r)})"
        )
    if points:
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no finished results", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training seconds per repeat: CPU, else wall (log)")
    ax.set_ylabel("test accuracy")
    ax.grid(color="#eee")
    fig.tight_layout()
    svg = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text: small, and the page's font
        fig.savefig(svg, format="svg")
    root = ET.fromstring(svg.getvalue())
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag == f"{{{SVG}}}metadata":
                parent.remove(child)
    for el in root.iter():
        el.tag = el.tag.rpartition("}")[2]
        el.attrib = {k.replace(f"{{{XLINK}}}", "xlink:"): v for k, v in el.attrib.items()}
        tip = tips.get(el.get("id")) if el.tag == "g" else None
        if tip is not None:
            title = ET.Element("title")
            title.text = tip
            el.insert(0, title)
            el.set("class", "point")
        if el.tag == "g":
            el.attrib.pop("id", None)  # figure_1, axes_1, ...: the same in every plot of the page
    what = "accuracy against training time" if points else "no finished results"
    root.attrib.update({"class": "scatter", "role": "img", "aria-label": f"{dataset_title(dataset)}: {what}"})
    return ET.tostring(root, encoding="unicode")


# --------------------------------------------------------------------------- the page

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; margin: 0 0 .2em; } h2 { font-size: 1.15em; margin: 1.4em 0 .5em; }
.meta { color: #666; font-size: .9em; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
#results th { cursor: pointer; user-select: none; }
#results th[aria-sort="ascending"]::after { content: " \\25B2"; }
#results th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { color: #a33; cursor: help; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
.plots figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: .3em; }
.legend span { display: inline-block; margin: 0 .9em .2em 0; font-size: .85em; }
.legend i { display: inline-block; width: .8em; height: .8em; margin-right: .3em; border-radius: 50%; }
.filters { margin: .4em 0 .8em; } .filters input, .filters select { margin-right: 1em; padding: 2px 4px; }
"""


def _best_table(rows: Sequence[dict], datasets: list[str]) -> str:
    per_ds = {ds: {r["family"]: r for r in best_per_family(rows, ds)} for ds in datasets}
    order: list[str] = []
    for ds in datasets:
        order += [f for f in per_ds[ds] if f not in order]
    head = (
        "<tr><th>Family</th>"
        + "".join(
            f"<th>{html.escape(dataset_title(ds))} accuracy</th><th>train s (CPU, else wall)</th><th>configuration</th>"
            for ds in datasets
        )
        + "</tr>"
    )
    body = []
    for fam in order:
        cells = [f"<td>{html.escape(fam)}</td>"]
        for ds in datasets:
            r = per_ds[ds].get(fam)
            if r is None:
                cells.append("<td></td><td></td><td></td>")
                continue
            secs = _seconds(r)
            cells.append(
                f'<td class="num">{r["mean_accuracy"]:.4f} ± {r["std_accuracy"] or 0:.4f}</td>'
                f'<td class="num">{"" if secs is None else f"{secs:.2f}"}</td>'
                f"<td>{html.escape(params_text(r['parameters']))} <span class=meta>({html.escape(size_label(r))})</span></td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="best"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def render_html(
    rows: Sequence[dict], title: str = "Fashion-MNIST benchmark", sources: Sequence[str] = ()
) -> str:
    """The whole page as one string."""
    datasets = datasets_of(rows)
    colours = family_colours(rows)
    data = table_data(rows)
    counts = {
        s: sum(1 for r in rows if r.get("status") == s)
        for s in ("done", "skipped", "timeout", "memory", "error")
    }
    versions = sorted({r["sklearn"] for r in rows if r.get("sklearn")})
    prints = sorted({f"{r['dataset']} {r['fingerprint']}" for r in rows if r.get("fingerprint")})
    meta = (
        f"{len(rows)} results ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
        f"scikit-learn {', '.join(versions) or '?'}; data fingerprints {', '.join(prints) or '?'}; "
        f"from {', '.join(str(s) for s in sources) or '?'}; generated "
        f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}"
    )
    plots = "".join(
        f"<figure><figcaption>{html.escape(dataset_title(ds))}</figcaption>{scatter_svg(rows, ds, colours)}</figure>"
        for ds in datasets
    )
    legend = "".join(
        f'<span><i style="background:{c}"></i>{html.escape(f)}</span>' for f, c in colours.items()
    )
    head = "".join(
        f'<th data-key="{html.escape(c["key"])}" data-numeric="{1 if c["numeric"] else 0}">{html.escape(c["label"])}</th>'
        for c in data["columns"]
    )
    payload = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    script = (Path(__file__).with_name("dashboard.js")).read_text(encoding="utf-8")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(meta)}</p>
<h2>Best configuration per family</h2>
{_best_table(rows, datasets)}
<h2>Accuracy against training time</h2>
<div class="plots">{plots}</div>
<div class="legend">{legend}</div>
<h2>All results</h2>
<div class="filters">
<label>Name <input id="filter-name" type="search" placeholder="e.g. SVC"></label>
<label>Parameter <input id="filter-param" type="search" placeholder="e.g. kernel=rbf"></label>
<label>Status <select id="filter-status"><option value="all">all</option><option value="done">done</option>
<option value="other">not done</option></select></label>
<span id="row-count"></span>
</div>
<table id="results"><thead><tr>{head}</tr></thead><tbody></tbody></table>
<script type="application/json" id="bench-data">{payload}</script>
<script>{script}</script>
</body></html>
"""


def write_report(
    rows: Sequence[dict],
    out: str | os.PathLike,
    title: str = "Fashion-MNIST benchmark",
    sources: Sequence[str] = (),
) -> Path:
    """Write the dashboard atomically; returns its path."""
    out = Path(out)
    write_text(out, render_html(rows, title, sources))
    return out
