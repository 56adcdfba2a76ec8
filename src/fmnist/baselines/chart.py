"""The report's chart: test accuracy against training seconds, one inline SVG per data set (matplotlib).

One marker per row, coloured by family, shaped by kind (2017 grid, addition, other benchmark) and hollow
for quick passes, each with its configuration, size, kind and machine as a tooltip.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence

import matplotlib
from matplotlib.figure import Figure

from fmnist.baselines.rows import (
    dataset_title,
    finished,
    kind,
    machine_of,
    params_text,
    seconds_of,
    size_label,
)

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


# Marker per kind of row: (matplotlib marker, filled). Quick passes are hollow, full-size rows filled.
MARKERS = {"2017 grid": ("o", True), "addition": ("^", True), "other": ("s", True)}
MARKER_LEGEND = (
    ("●", "2017 grid, full size"),
    ("○", "2017 grid, quick pass"),
    ("▲", "addition (today's scikit-learn)"),
    ("■", "CNN / other benchmark"),
)


def marker_of(row: dict) -> tuple[str, bool]:
    shape, filled = MARKERS.get(kind(row), MARKERS["other"])
    return shape, filled and row.get("subsample") is None


def family_colours(rows: Iterable[dict]) -> dict[str, str]:
    fams = list(dict.fromkeys(r.get("family", r["name"]) for r in rows))
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(fams)}


def scatter_svg(rows: Sequence[dict], dataset: str, colours: dict[str, str]) -> str:
    """Accuracy (y) against training seconds per repeat (x, log) of ``dataset``'s finished rows.

    Matplotlib's SVG, made fit to sit inline in the page: one ``g.point`` per row with its
    configuration as a tooltip (``<title>``), no namespaces, metadata or group ids.
    """
    points = [(r, s) for r in finished(rows) if r["dataset"] == dataset and (s := seconds_of(r)) is not None]
    fig = Figure(figsize=(4.8, 3.3))
    ax = fig.add_subplot()
    tips = {}
    for i, (r, secs) in enumerate(points):
        gid = f"point-{i}"
        colour = colours.get(r.get("family", r["name"]), "#333")
        shape, filled = marker_of(r)
        ax.plot(
            [max(secs, 1e-3)],
            [r["mean_accuracy"]],
            shape,
            ms=5.5,
            color=colour,
            markerfacecolor=colour if filled else "white",
            alpha=0.8,
            gid=gid,
        )
        where = machine_of(r)
        tips[gid] = (
            f"{r['name']} {params_text(r['parameters'])}: {r['mean_accuracy']:.4f}, {secs:.2f} s "
            f"[{', '.join(filter(None, (size_label(r), kind(r), where)))}]"
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
