"""``fmnist bench report``: one self-contained HTML dashboard of every result row, readable offline.

The page embeds its data (JSON) and its code (plain JavaScript, :file:`dashboard.js`); the scatter
plots are matplotlib's SVG, inline. No CDN, no font or script from anywhere: it opens from a file on
a machine without network. Rows are grouped by configuration (name, parameters, training size) so
Fashion-MNIST and MNIST results of the same configuration sit side by side.

Every kind of row shares the one table and the one chart per data set: the 2017 grid at full size and
as a quick pass, today's additions, and the CNN benchmark's rows, each marked with its kind, its
number of training images and the machine it ran on. The paper's Table 3 figures
(:mod:`fmnist.baselines.published`) stand beside the rows of its configurations: published, measured,
difference.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from fmnist.baselines.chart import MARKER_LEGEND, family_colours, scatter_svg
from fmnist.baselines.published import PAPER, TABLE3, published_family_best, published_for
from fmnist.baselines.results import ResultsError, latest, read_results
from fmnist.baselines.rows import (
    dataset_title,
    datasets_of,
    family_label,
    finished,
    kind,
    machine_of,
    params_text,
    seconds_of,
    size_label,
    tags,
    training_images,
    wall_seconds,
)
from fmnist.fsio import write_text


def load_rows(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """Rows of every file, the last row per key winning (a later file or a retried job)."""
    rows: list[dict] = []
    for path in paths:
        if not Path(path).exists():
            raise ResultsError(f"{path}: results file not found")
        rows.extend(read_results(path))
    return list(latest(rows).values())


def best_per_family(rows: Iterable[dict], dataset: str) -> list[dict]:
    """The most accurate finished row of each family on ``dataset``, best first."""
    best: dict[str, dict] = {}
    for r in finished(rows):
        if r["dataset"] != dataset:
            continue
        old = best.get(family_label(r))
        if old is None or r["mean_accuracy"] > old["mean_accuracy"]:
            best[family_label(r)] = r
    return sorted(best.values(), key=lambda r: -r["mean_accuracy"])


def _fmt_seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def best_per_family_markdown(rows: Sequence[dict]) -> str:
    """The best configuration per family as a Markdown table per data set (for RESULTS.md)."""
    out = []
    for ds in datasets_of(rows):
        out.append(f"{dataset_title(ds)}:\n")
        out.append(
            "| family | best configuration | accuracy (mean ± std, repeats) | train CPU s / repeat "
            "| train wall s / repeat | training images | machine |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for r in best_per_family(rows, ds):
            out.append(
                f"| {family_label(r)} | {params_text(r['parameters'])} | {r['mean_accuracy']:.4f} ± "
                f"{r['std_accuracy'] or 0:.4f} ({r['repeats']}) | {_fmt_seconds(r.get('train_cpu_seconds'))} | "
                f"{_fmt_seconds(wall_seconds(r))} | {size_label(r)} | {machine_of(r)} |"
            )
        out.append("")
    return "\n".join(out) if out else "(no results)"


def table3_rows(rows: Sequence[dict]) -> list[tuple]:
    """``(published, row or None)`` for each Table 3 entry: its finished rows, most training images first."""
    out = []
    for p in TABLE3:
        mine = [r for r in finished(rows) if (q := published_for(r)) is not None and q.key == p.key]
        mine.sort(key=lambda r: -(training_images(r) or 0))
        out += [(p, r) for r in mine] or [(p, None)]
    return out


def table3_markdown(rows: Sequence[dict]) -> str:
    """Published vs measured vs difference for the paper's Table 3 configurations ("" when none was run)."""
    pairs = table3_rows(rows)
    if all(r is None for _, r in pairs):
        return ""
    out = [
        f"{PAPER} (Fashion-MNIST, published on 60,000 training images) vs measured:\n",
        "| family | configuration | published | measured (mean ± std, repeats) | difference (points) "
        "| training images | train CPU s / repeat | predict CPU s / repeat | machine |",
        "|---|---|---:|---|---:|---|---:|---:|---|",
    ]
    for p, r in pairs:
        if r is None:
            out.append(f"| {p.name} | {params_text(p.parameters)} | {p.accuracy:.3f} | not run | | | | | |")
            continue
        out.append(
            f"| {p.name} | {params_text(p.parameters)} | {p.accuracy:.3f} | {r['mean_accuracy']:.4f} ± "
            f"{r['std_accuracy'] or 0:.4f} ({r['repeats']}) | {100 * (r['mean_accuracy'] - p.accuracy):+.1f} | "
            f"{size_label(r)} | {_fmt_seconds(r.get('train_cpu_seconds'))} | "
            f"{_fmt_seconds(r.get('test_cpu_seconds'))} | {machine_of(r)} |"
        )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- table data


def table_data(rows: Sequence[dict]) -> dict:
    """The embedded JSON: columns, and one row per configuration with a cell group per data set."""
    datasets = datasets_of(rows)
    groups: dict[tuple, dict] = {}
    for r in rows:
        gkey = (r["name"], json.dumps(r.get("parameters", {}), sort_keys=True), r.get("subsample"), kind(r))
        g = groups.setdefault(
            gkey,
            {
                "name": r["name"],
                "family": r.get("family", r["name"]),
                "kind": kind(r),
                "params": params_text(r.get("parameters", {})),
                "n_train": None,
                "size": size_label(r),
                "machine": "",
                "tags": [],
                "published": None,
                "diff": None,
                "_status": [],
            },
        )
        if g["n_train"] is None and training_images(r) is not None:
            g["n_train"], g["size"] = training_images(r), size_label(r)
        where = machine_of(r)
        if where and where not in g["machine"].split(" | "):
            g["machine"] = f"{g['machine']} | {where}" if g["machine"] else where
        g["tags"] = list(dict.fromkeys([*g["tags"], *tags(r)]))
        published = published_for(r)
        if published is not None:
            g["published"] = published.accuracy
            if r.get("status") == "done" and r.get("mean_accuracy") is not None:
                g["diff"] = r["mean_accuracy"] - published.accuracy
        i = datasets.index(r["dataset"])
        g[f"acc{i}"] = r.get("mean_accuracy")
        g[f"std{i}"] = r.get("std_accuracy")
        g[f"rep{i}"] = r.get("repeats")
        g[f"secs{i}"] = wall_seconds(r)
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
        {"key": "kind", "label": "Kind", "numeric": False},
        {"key": "params", "label": "Parameters", "numeric": False},
        {"key": "n_train", "label": "Training images", "numeric": True, "format": "size"},
        {"key": "machine", "label": "Machine", "numeric": False},
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
    if any(g["published"] is not None for g in out_rows):
        columns += [
            {"key": "published", "label": "Table 3 (2017)", "numeric": True, "format": "acc"},
            {"key": "diff", "label": "measured − published", "numeric": True, "format": "diff"},
        ]
    return {"rows": out_rows, "columns": columns, "default_sort": "acc0" if datasets else "name"}


# --------------------------------------------------------------------------- scatter (matplotlib's SVG)


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
    per_ds = {ds: {family_label(r): r for r in best_per_family(rows, ds)} for ds in datasets}
    order: list[str] = []
    for ds in datasets:
        order += [f for f in per_ds[ds] if f not in order]
    head = (
        "<tr><th>Family</th>"
        + "".join(
            f"<th>{html.escape(dataset_title(ds))} accuracy</th><th>train s (CPU, else wall)</th><th>configuration</th>"
            for ds in datasets
        )
        + "<th>Table 3 best (2017, 60,000 images)</th></tr>"
    )
    body = []
    for fam in order:
        cells = [f"<td>{html.escape(fam)}</td>"]
        published = published_family_best(fam)
        for ds in datasets:
            r = per_ds[ds].get(fam)
            if r is None:
                cells.append("<td></td><td></td><td></td>")
                continue
            secs = seconds_of(r)
            cells.append(
                f'<td class="num">{r["mean_accuracy"]:.4f} ± {r["std_accuracy"] or 0:.4f}</td>'
                f'<td class="num">{"" if secs is None else f"{secs:.2f}"}</td>'
                f"<td>{html.escape(params_text(r['parameters']))} <span class=meta>({html.escape(size_label(r))}"
                f"{'; ' + html.escape(machine_of(r)) if machine_of(r) else ''})</span></td>"
            )
        cells.append(
            f"<td>{published.accuracy:.3f} <span class=meta>({html.escape(params_text(published.parameters))})</span></td>"
            if published is not None
            else "<td></td>"
        )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="best"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _table3_html(rows: Sequence[dict]) -> str:
    """Published vs measured vs difference, one line per measured row of each Table 3 configuration."""
    body = []
    for p, r in table3_rows(rows):
        cells = [
            f"<td>{html.escape(p.name)}</td><td>{html.escape(params_text(p.parameters))}</td>",
            f'<td class="num">{p.accuracy:.3f}</td>',
        ]
        if r is None:
            cells.append('<td class="meta">not run</td><td></td><td></td><td></td><td></td>')
        else:
            secs = seconds_of(r)
            cells.append(
                f'<td class="num">{r["mean_accuracy"]:.4f} ± {r["std_accuracy"] or 0:.4f}</td>'
                f'<td class="num">{100 * (r["mean_accuracy"] - p.accuracy):+.1f}</td>'
                f"<td>{html.escape(size_label(r))}</td>"
                f'<td class="num">{"" if secs is None else f"{secs:.2f}"}</td>'
                f"<td>{html.escape(machine_of(r))}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = (
        "<tr><th>Family</th><th>Configuration</th><th>published</th><th>measured</th>"
        "<th>difference (points)</th><th>training images</th><th>train s (CPU, else wall)</th><th>machine</th></tr>"
    )
    return f'<table id="table3"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


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
    legend = (
        "".join(f'<span><i style="background:{c}"></i>{html.escape(f)}</span>' for f, c in colours.items())
        + "<br>"
        + "".join(f"<span>{m} {html.escape(what)}</span>" for m, what in MARKER_LEGEND)
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
<h2>The paper's Table 3: published vs measured</h2>
<p class="meta">{html.escape(PAPER)}: Fashion-MNIST test accuracy of each family's best configuration,
trained on all 60,000 images in 2017; beside it every run of the same configuration here.</p>
{_table3_html(rows)}
<h2>Accuracy against training time</h2>
<div class="plots">{plots}</div>
<div class="legend">{legend}</div>
<h2>All results</h2>
<div class="filters">
<label>Name <input id="filter-name" type="search" placeholder="e.g. SVC"></label>
<label>Parameter <input id="filter-param" type="search" placeholder="e.g. kernel=rbf"></label>
<label>Status <select id="filter-status"><option value="all">all</option><option value="done">done</option>
<option value="other">not done</option></select></label>
<label>Kind <select id="filter-kind"><option value="all">all</option><option value="full">full size</option>
<option value="quick">quick pass</option><option value="grid">2017 grid</option><option value="addition">additions</option>
<option value="cnn">CNN</option><option value="table3">Table 3 configurations</option></select></label>
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
