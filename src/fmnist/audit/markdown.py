"""``audit.md``: the audit's summary (the dict that also becomes ``audit.json``, built by
:mod:`fmnist.audit.report`) rendered as a short Markdown report, from the summary alone."""

from __future__ import annotations

from fmnist.audit.labels import OOF_FILE


def format_markdown(s: dict, classes: tuple[str, ...]) -> str:
    """The audit as a short Markdown report."""
    d = s["duplicates"]
    split_pairs = list(d["exact"])  # train-train, t10k-t10k, train-t10k: the order the summary was built in
    lines = [
        f"# Data audit: {s['data']}",
        "",
        f"Images: {s['images']['train']:,} train, {s['images']['t10k']:,} t10k (test).",
        "",
        "## Duplicates",
        "",
        f"Exact: identical bytes. Near: RMS pixel difference at most {d['threshold_rms']:g} grey levels "
        "(of 255), found by exact search.",
        "",
        "| split pair | exact pairs | near pairs | images in a near pair | labels disagree (exact/near) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in split_pairs:
        e, n = d["exact"][key], d["near"][key]
        lines.append(
            f"| {key} | {e['pairs']} | {n['pairs']} | {n['images']} | {e['labels_disagree']}/{n['labels_disagree']} |"
        )
    lines += [
        "",
        f"Test images with an exact or near copy in train: {d['exact']['train-t10k']['t10k_images']} exact, "
        f"{d['near']['train-t10k']['t10k_images']} near.",
    ]
    lines += [
        "",
        "Pairs at or below each RMS distance (exact duplicates included):",
        "",
        "| RMS <= | " + " | ".join(split_pairs) + " |",
        "|---:|" + "---:|" * len(split_pairs),
    ]
    for t, counts in d["ladder"].items():
        lines.append(f"| {t} | " + " | ".join(str(counts[k]) for k in split_pairs) + " |")
    lines += [
        "",
        "## Class balance and pixel statistics",
        "",
        "| class | train | t10k | mean intensity | ink fraction | bright fraction | height | width |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    train_stats = [r for r in s["class_stats"] if r["split"] == "train"]
    for c, name in enumerate(classes):
        r = train_stats[c]
        if not r["images"]:
            lines.append(f"| {name} | 0 | {s['class_balance']['t10k'][c]} | | | | | |")
            continue
        lines.append(
            f"| {name} | {s['class_balance']['train'][c]} | {s['class_balance']['t10k'][c]} | {r['mean_intensity']:.3f} | "
            f"{r['ink_fraction']:.3f} | {r['bright_fraction']:.3f} | {r['mean_height']:.1f} | {r['mean_width']:.1f} |"
        )
    lines += [
        "",
        "Pixel statistics over the training split; intensity as a fraction of 255, ink = pixel > 0, "
        "bright = pixel >= 128, height/width = rows/columns spanned by ink.",
    ]
    le = s.get("label_errors")
    if le:
        lines += [
            "",
            "## Likely label errors",
            "",
            f"Scheme: {le['scheme']}.",
            "",
            f"- out-of-sample accuracy: {le['out_of_sample_accuracy']:.4f} over {le['scored_images']:,} images",
            f"- flagged by confident learning: {le['flagged_confident_learning']:,}",
            "- images whose given label gets p < 0.001 / 0.01 / 0.05 / 0.1: "
            + " / ".join(f"{v:,}" for v in le["p_label_below"].values()),
            "- top 100 by split: " + ", ".join(f"{k} {v}" for k, v in le["top100_by_split"].items()),
            "- top 100, given -> predicted: "
            + "; ".join(f"{k} ({v})" for k, v in le["top100_given_to_predicted"].items()),
        ]
        lines += markdown_cross_checks(le)
        lines += [
            "",
            "See label_errors.csv (every image, most suspect first), label_errors.png and "
            f"{le.get('probabilities_file', OOF_FILE)} (the out-of-sample probabilities).",
        ]
    return "\n".join(lines) + "\n"


def markdown_cross_checks(le: dict) -> list[str]:
    """The cleanlab and published-errors comparisons as Markdown lines (empty when neither ran)."""
    lines: list[str] = []
    if "cleanlab" in le:
        cl = le["cleanlab"]
        lines += ["", "### Against cleanlab", ""]
        if cl is None:
            lines.append("cleanlab is not installed: comparison skipped.")
        elif "error" in cl:
            lines.append(f"cleanlab failed on these probabilities: {cl['error']}.")
        else:
            lines += [
                f"Same out-of-sample probabilities, cleanlab {cl['version']} `find_label_issues` "
                "(prune by noise rate, ranked by self-confidence).",
                "",
                f"- issues: cleanlab {cl['cleanlab_flagged']:,}, audit (confident learning) "
                f"{cl['audit_flagged']:,}; in both {cl['overlap']:,} (Jaccard {cl['jaccard']:.3f})",
                f"- audit's top 100 / top 1,000 in cleanlab's set: {cl['audit_top100_in_cleanlab']} / "
                f"{cl['audit_top1000_in_cleanlab']:,}",
            ]
    refs = le.get("references")
    if refs:
        lines += [
            "",
            "### Against published mislabelled training images",
            "",
            "| source | indices | scored | in top 100 | in top 1,000 |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in refs.items():
            lines.append(f"| {name} | {r['indices']} | {r['scored']} | {r['top100']} | {r['top1000']} |")
        ranks = refs.get("fashion_mnist_issue184", {}).get("ranks", {})
        for index, rank in ranks.items():
            where = f"ranks {rank:,}" if rank is not None else "was not scored"
            lines += ["", f"Training image {index} (fashion-mnist issue #184, a full-body image) {where}."]
        if refs.get("muller_markert_table7", {}).get("indices") == 0:
            lines += ["", "Müller & Markert's Table 7 is not recorded (see fmnist/audit/references.py)."]
    return lines
