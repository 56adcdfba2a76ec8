"""``fmnist evaluate RUN_DIR``: test accuracy, per-class figures, confusion matrix, errors, ECE."""

from __future__ import annotations

import json

from fmnist.cli import add_command


def register(sub) -> None:
    p = add_command(
        sub,
        "evaluate",
        help="score a run's best model on the test set and write report.md",
        description="Evaluate RUN_DIR/model.pt on the test set: accuracy, per-class precision/recall/F1, "
        "confusion matrix (table and PNG), the most confidently wrong images (PNG), calibration error.",
        example="fmnist evaluate runs/first --json",
    )
    p.add_argument("run_dir", help="a run folder written by `fmnist train`")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--tta",
        action="store_true",
        help="also score each image's mirror and average (flip test-time augmentation)",
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from fmnist.evaluate.report import evaluate_run
    from fmnist.train.device import resolve_device

    f = evaluate_run(args.run_dir, args.data_dir, resolve_device(args.device), flip_tta=args.tta)
    if args.json:
        print(json.dumps({k: v for k, v in f.items() if k != "calibration_bins"}, indent=2))
        return 0
    print(format_evaluation(f))
    return 0


def format_evaluation(f: dict) -> str:
    lines = [
        f"test accuracy {f['accuracy']:.4f}{' (flip TTA)' if f.get('tta') else ''}  macro F1 {f['macro_f1']:.4f}  "
        f"ECE {f['ece']:.4f}  "
        f"(data fingerprint {f['data_fingerprint']})"
    ]
    width = max(len(c) for c in f["per_class"])
    lines.append(f"  {'class':<{width}}  precision  recall     F1")
    for name, pc in f["per_class"].items():
        lines.append(f"  {name:<{width}}  {pc['precision']:9.4f}  {pc['recall']:6.4f}  {pc['f1']:.4f}")
    lines.append(f"report: {f['run_dir']}/report.md")
    return "\n".join(lines)
