"""``fmnist evaluate RUN_DIR``: test accuracy, per-class figures, confusion matrix, errors, ECE."""

from __future__ import annotations

import json

from fmnist.cli import add_command, add_data_dir_arg, add_device_arg
from fmnist.errors import FmnistError
from fmnist.evaluate.record import format_evaluation
from fmnist.train.device import resolve_device

# The evaluation (torch, matplotlib) is imported inside the command: `fmnist --help` stays light.


def register(sub) -> None:
    p = add_command(sub, "evaluate", cmd_evaluate)
    p.add_argument("run_dir", help="a run folder written by `fmnist train`")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_data_dir_arg(p)
    add_device_arg(p)
    p.add_argument(
        "--tta", action="store_true", help="also score each image's mirror (flip test-time augmentation)"
    )
    c = add_command(sub, "calibrate", cmd_calibrate)
    c.add_argument("model", metavar="RUN_DIR_OR_MODEL", help="a run folder or its model.pt")
    c.add_argument(
        "--photos", metavar="DIR", default=None, help="labelled photos to choose the abstain threshold on"
    )
    c.add_argument("--labels", metavar="CSV", default=None, help="their labels (default: DIR/labels.csv)")
    add_data_dir_arg(c)


def cmd_evaluate(args) -> int:
    """score a run's best model on the test set and write report.md

    Evaluate RUN_DIR/model.pt on the test set: accuracy, per-class precision/recall/F1, confusion matrix
    (table and PNG), the most confidently wrong images (PNG), calibration error. Writes evaluation.json
    (whose accuracy predict and serve report), report.md, confusion.png and errors.png beside the model;
    with --tta the same names end in -flip-tta. model.pt is not changed.

    Example: fmnist evaluate runs/first --json
    """
    from fmnist.evaluate.report import evaluate_run

    evaluation = evaluate_run(args.run_dir, args.data_dir, resolve_device(args.device), flip_tta=args.tta)
    if args.json:
        figures = evaluation.to_dict()
        del figures["calibration_bins"]  # in evaluation.json; too long for a terminal
        print(json.dumps(figures, indent=2))
    else:
        print(format_evaluation(evaluation))
    return 0


def cmd_calibrate(args) -> int:
    """fit a model's temperature and abstain threshold (calibration.json)

    Refit the temperature on the model's validation split (training already does this) and choose the
    abstain threshold: where the validation answers turn mostly wrong or, with --photos, the one that
    best tells labelled garments from none-of-the-ten photos. Writes calibration.json beside model.pt,
    which predict, serve and export use. The photos are a validation set: nothing is trained on them.

    Example: fmnist calibrate runs/photo --photos ../shared/photos
    """
    from fmnist.evaluate.calibrate import calibrate_model

    if args.labels is not None and args.photos is None:
        raise FmnistError("--labels goes with --photos")
    calibration, path = calibrate_model(args.model, args.photos, args.labels, args.data_dir)
    print(f"temperature {calibration.temperature:.3f}: {calibration.chosen_on['temperature']}")
    print(f"{calibration.abstain_rule()}: {calibration.chosen_on['abstain_threshold']}")
    print(f"wrote {path}")
    return 0
