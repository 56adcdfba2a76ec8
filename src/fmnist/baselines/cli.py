"""``fmnist bench sklearn | report | add | estimate``: the scikit-learn baselines and the results table they share.

Each action is a pair: ``_add_NAME(actions)`` builds its parser, ``cmd_NAME(args)`` runs it;
:mod:`fmnist.bench.cli` puts them under ``fmnist bench`` beside the CNN benchmark. Nothing imported
here loads scikit-learn or Dask (the runner and the estimators import them when a job needs them);
the report (matplotlib) is imported inside its command, so ``fmnist --help`` stays light.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from fmnist.baselines.estimators import CannotBuild, build_estimator, describe
from fmnist.baselines.job import default_memory_limit_mb, parse_memory
from fmnist.baselines.results import append_external_result, external_row, load_rows_file
from fmnist.baselines.runner import (
    DEFAULT_QUICK,
    QUICK_REPEATS,
    QUICK_TIME_LIMIT,
    SklearnBenchConfig,
    make_plan,
    run_benchmark,
)
from fmnist.cli import add_command, config_from_args, number
from fmnist.data.cli import add_source_args
from fmnist.errors import ConfigError

DEFAULT_RESULTS = "benchmarks/results/sklearn.jsonl"
DEFAULT_REPORT = "benchmarks/results/dashboard.html"


def add_results_arg(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """``--results``: the JSONL file every benchmark action reads or appends to."""
    if many:
        how = {
            "nargs": "+",
            "default": [DEFAULT_RESULTS],
            "help": "results files to show (rows with the same key: the last wins)",
        }
    else:
        how = {
            "default": DEFAULT_RESULTS,
            "help": "results file: appended one row per finished job, read to resume",
        }
    parser.add_argument("--results", metavar="JSONL", **how)


def _add_sklearn(actions) -> None:
    p = add_command(actions, "sklearn", cmd_sklearn)
    add_source_args(p)
    p.add_argument(
        "--data-npz",
        default=None,
        metavar="NPZ",
        help="use an `fmnist data export --format npz` file instead (its name becomes --dataset)",
    )
    add_results_arg(p)
    p.add_argument(
        "--quick",
        type=int,
        nargs="?",
        const=DEFAULT_QUICK,
        default=None,
        metavar="N",
        help=f"train on a stratified subsample of N images (default N: {DEFAULT_QUICK}); "
        f"also makes --repeats default to {QUICK_REPEATS} and --time-limit to {QUICK_TIME_LIMIT:g}",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FAMILY",
        help="run only this family, e.g. SVC or RandomForest (repeatable, or comma-separated)",
    )
    p.add_argument(
        "--best",
        action="store_true",
        help="run only the 13 family-best configurations of the paper's Table 3 (arXiv:1708.07747), "
        "picked from the shipped grid; --only narrows them to some families",
    )
    p.add_argument(
        "--additions",
        action="store_true",
        help="run the rows today's scikit-learn adds to the 2017 grid (additions.json: histogram "
        "gradient boosting, SVC on PCA-whitened inputs, ...), marked as additions; with --best: both",
    )
    p.add_argument("--jobs", type=int, default=1, help="jobs run at once")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads inside each job")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on Dask: 'local' for a LocalCluster, or tcp://HOST:PORT of a scheduler",
    )
    p.add_argument(
        "--time-limit",
        type=number(float, 0, above=True),
        default=None,
        metavar="SECONDS",
        help="CPU seconds per job (start-up included); the kernel stops a job at it (RLIMIT_CPU) and "
        "it is recorded as timeout (default: 3600)",
    )
    p.add_argument(
        "--wall-limit",
        type=number(float, 0, above=True),
        default=None,
        metavar="SECONDS",
        help="wall seconds per job, for jobs that wait instead of computing (default: 5 x --time-limit)",
    )
    p.add_argument(
        "--memory-limit",
        default=None,
        metavar="SIZE",
        help="data memory per job, e.g. 4G: an allocation past it fails (RLIMIT_DATA) and the job is "
        "recorded as memory (default: 90%% of RAM / --jobs)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="shuffles of the training set per configuration (default: 3)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the subsample and the shuffles")
    p.add_argument(
        "--grid", default=None, metavar="JSON", help="grid file (default: the README's baselines.json)"
    )
    p.add_argument(
        "--retry",
        action="append",
        default=[],
        metavar="STATUS",
        help="run again the jobs recorded with this status (timeout, memory, error, skipped)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would run, and how each is built")


def cmd_sklearn(args) -> int:
    """the README's 143 scikit-learn baselines, under time and memory limits, resumable

    Train and score every configuration of the README's baselines.json (or --grid) on today's
    scikit-learn. Each job runs in its own process under a time and memory limit; each finished job is
    one line in --results, and a restarted run skips what is there.

    --best runs the paper's Table 3 rows only (published vs measured in `fmnist bench report`);
    --additions runs today's additions. The full grid is the default.

    Example: fmnist bench sklearn --best --jobs 2 --results benchmarks/results/sklearn-full.jsonl
    """
    quick = args.quick is not None
    cfg = config_from_args(
        SklearnBenchConfig,
        args,
        dataset=Path(args.data_npz).stem if args.data_npz else args.dataset,
        memory_limit_mb=parse_memory(args.memory_limit)
        if args.memory_limit
        else default_memory_limit_mb(args.jobs),
        repeats=args.repeats if args.repeats is not None else (QUICK_REPEATS if quick else 3),
        time_limit=args.time_limit
        if args.time_limit is not None
        else (QUICK_TIME_LIMIT if quick else 3600.0),
        only=tuple(args.only),
        retry=tuple(args.retry),
    )
    cfg.validate()
    print("config: " + json.dumps(dataclasses.asdict(cfg)))
    if args.dry_run:
        return _dry_run(cfg)
    run_benchmark(cfg)
    return 0


def _dry_run(cfg: SklearnBenchConfig) -> int:
    plan = make_plan(cfg)
    print(
        f"{len(plan.configs)} configurations, {len(plan.finished)} finished, {len(plan.jobs)} to run, "
        f"{len(plan.refused)} refused; {plan.n_train:,} training images"
    )
    for row in plan.refused:
        print(f"refuse  {row['name']} {json.dumps(row['parameters'])}: {row['reason']}")
    for job in plan.jobs:
        try:
            built = build_estimator(job.name, job.parameters)
            how = describe(built.estimator) + (f"   [{'; '.join(built.mapped)}]" if built.mapped else "")
        except CannotBuild as exc:
            how = f"cannot be built: {exc}"
        print(f"run     {job.name} {json.dumps(job.parameters)} -> {how}")
    return 0


def _add_report(actions) -> None:
    p = add_command(actions, "report", cmd_report)
    add_results_arg(p, many=True)
    p.add_argument("--out", default=DEFAULT_REPORT, metavar="HTML", help="the HTML file to write")
    p.add_argument("--title", default="Fashion-MNIST benchmark", help="page title")


def cmd_report(args) -> int:
    """write the offline HTML dashboard and print the best per family

    Write one self-contained HTML file (no network needed): a sortable table filterable by name,
    parameter and kind, accuracy against training time, the best configuration per family, Fashion-MNIST
    and MNIST side by side where both were run. Full-size, quick-pass, addition and CNN rows share the
    table and the chart, each with its training images and machine; the paper's Table 3 figures
    (arXiv:1708.07747) stand beside the runs of its configurations, and are printed as published vs
    measured vs difference.

    Example: fmnist bench report --results benchmarks/results/sklearn.jsonl --out dashboard.html
    """
    from fmnist.baselines.report import best_per_family_markdown, load_rows, table3_markdown, write_report

    rows = load_rows(args.results)
    path = write_report(rows, args.out, title=args.title, sources=args.results)
    print(best_per_family_markdown(rows))
    table3 = table3_markdown(rows)
    if table3:
        print(table3)
    print(f"wrote {path} ({len(rows)} rows)")
    return 0


def _add_estimate(actions) -> None:
    p = add_command(actions, "estimate", cmd_estimate)
    add_results_arg(p, many=True)
    p.add_argument("--dataset", default="fashion", help="data set of the rows to scale (default: fashion)")
    p.add_argument(
        "--train-images",
        type=number(int, 1, above=True),
        default=60_000,
        metavar="N",
        help="training images of the run to estimate (default: 60,000, the full set)",
    )
    p.add_argument("--jobs", type=number(int, 1), default=1, help="jobs at once, for the wall-time figure")
    p.add_argument(
        "--time-limit",
        type=number(float, 0, above=True),
        default=3600.0,
        metavar="SECONDS",
        help="the run's CPU seconds per job: also print the total with each job stopped there (default: 3600)",
    )
    p.add_argument(
        "--grid", default=None, metavar="JSON", help="grid file (default: the README's baselines.json)"
    )
    p.add_argument("--best", action="store_true", help="estimate the 13 Table 3 rows of `--best` only")


def cmd_estimate(args) -> int:
    """estimate the full grid's CPU time from rows measured on a subsample (an estimate, not a measurement)

    Scale each configuration's fit and test CPU seconds from a --quick run to --train-images with its
    family's cost law (SVC fit n^2 at least, k-NN predict n, trees n log n, linear models and MLP n),
    times the repeats the full run will make; print the per-family table, the laws and the total.
    Configurations that timed out on the subsample count as lower bounds; missing ones are listed.

    Example: fmnist bench estimate --results benchmarks/results/sklearn-quick.jsonl --jobs 2
    """
    from fmnist.baselines.estimate import estimate_grid, estimate_text
    from fmnist.baselines.grid import expand, load_grid
    from fmnist.baselines.report import load_rows

    if args.best and args.grid:
        raise ConfigError(
            "--best picks its rows from the shipped grid files; it cannot be combined with --grid"
        )
    rows = load_rows(args.results)
    configs = expand(load_grid(args.grid))
    if args.best:
        from fmnist.baselines.published import best_configs

        configs = best_configs(configs)
    estimates = estimate_grid(configs, rows, args.dataset, args.train_images)
    if all(e.cpu_seconds is None for e in estimates):
        raise ConfigError(
            f"no subsample rows of {args.dataset} in {', '.join(args.results)}; run `fmnist bench sklearn --quick` first"
        )
    print(estimate_text(estimates, args.train_images, args.jobs, args.time_limit))
    return 0


def _add_add(actions) -> None:
    p = add_command(actions, "add", cmd_add)
    p.add_argument("file", metavar="FILE", help="rows to add")
    add_results_arg(p)
    p.add_argument("--source", default="cnn", help="what produced the rows; also the default family")


def cmd_add(args) -> int:
    """add results from another benchmark (a CNN's) to a results file

    Append rows from FILE (a JSON object, a list of them, or JSON lines), each with at least name,
    dataset and mean_accuracy (a fraction) or scores, so one table ranks everything; n_train
    (training images) and machine (where it ran) are shown beside each. FILE may also be the cnn.json
    of `fmnist bench cnn`: one row per recipe, with its training size and machine.

    Example: fmnist bench add cnn.json   # cnn.json: {"name": "CNN", "dataset": "fashion", "mean_accuracy": 0.93}
    """
    rows = load_rows_file(args.file)
    for row in rows:
        external_row(row, args.source)  # check every row before adding any
    for row in rows:
        stored = append_external_result(args.results, row, args.source)
        print(f"added {stored['key']}: {stored['mean_accuracy']:.4f}")
    return 0


ACTIONS = (_add_sklearn, _add_report, _add_add, _add_estimate)
