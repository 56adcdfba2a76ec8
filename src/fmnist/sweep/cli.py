"""``fmnist sweep``: many trainings from a TOML plan on a Dask cluster, one table, an optional ensemble."""

from __future__ import annotations

from pathlib import Path

from fmnist.cli import add_command, add_data_dir_arg, config_from_args
from fmnist.errors import ConfigError, FmnistError
from fmnist.sweep.plan import SweepOptions, load_plan, load_search

# The runner (torch, Dask: the bench extra) is imported inside the command: `fmnist --help` stays light.


def register(sub) -> None:
    p = add_command(sub, "sweep", cmd_sweep)
    p.add_argument("plan", type=Path, help="TOML file with [base] and [grid] tables")
    p.add_argument("--out", type=Path, required=True, help="sweep folder (one sub-folder per run)")
    p.add_argument("--scheduler", default="local", help="'local' for a LocalCluster, or tcp://HOST:PORT")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument(
        "--ensemble", type=int, default=0, metavar="K", help="ensemble the K best runs by val accuracy"
    )
    p.add_argument(
        "--search",
        choices=("grid", "optuna"),
        default="grid",
        help="every grid combination, or an Optuna study",
    )
    p.add_argument("--trials", type=int, metavar="N", help="--search optuna: trials in the study (resumable)")
    p.add_argument("--sampler-seed", type=int, default=0, help="--search optuna: the TPE sampler's seed")
    add_data_dir_arg(p, use="every run reads it")
    p.add_argument("--dry-run", action="store_true", help="list the runs and stop")


def cmd_sweep(args) -> int:
    """run seeds / a small grid of trainings on Dask, resumably, into one table

    Expand a TOML plan ([base] config keys, [grid] lists) into runs, train and evaluate each on a Dask
    LocalCluster or an existing scheduler. Finished runs are not redone; killed ones resume. Writes
    sweep.md / sweep.jsonl in --out.

    With --search optuna --trials N, an Optuna study (OUT/optuna.db, resumable) searches the [search]
    table's knobs (lists of choices or {low, high, log} ranges) for the best validation accuracy.

    Example: fmnist sweep sweep.toml --out runs/sweep --workers 2 --ensemble 3
    """
    if args.workers < 1 or args.threads < 1 or args.ensemble < 0:
        raise ConfigError("--workers and --threads must be positive, --ensemble >= 0")
    if args.search == "optuna":
        return search_optuna(args)
    if args.trials is not None:
        raise ConfigError("--trials is for --search optuna; the grid runs every combination")
    runs = load_plan(args.plan, data_dir=args.data_dir)
    if args.dry_run:
        for r in runs:
            print(r.name)
        return 0
    from fmnist.sweep.runner import run_sweep

    result = run_sweep(runs, args.out, sweep_options(args))
    return report(result, args.out)


def search_optuna(args) -> int:
    """``--search optuna``: inputs checked (and Optuna imported) before any run starts."""
    if args.trials is None or args.trials < 1:
        raise ConfigError("--search optuna needs --trials N with N >= 1")
    plan = load_search(args.plan, data_dir=args.data_dir)
    from fmnist.dask_client import check_scheduler
    from fmnist.sweep.optuna_search import import_optuna

    check_scheduler(args.scheduler)

    import_optuna()
    if args.dry_run:
        for knob in plan.knobs:
            print(f"{knob.name}: {knob.spec()}")
        print(f"{args.trials} trials")
        return 0
    from fmnist.sweep.optuna_search import run_search

    result = run_search(
        plan, args.out, trials=args.trials, seed=args.sampler_seed, options=sweep_options(args)
    )
    return report(result, args.out)


def sweep_options(args):
    """The flags every sweep mode shares, as :class:`fmnist.sweep.runner.SweepOptions`."""
    return config_from_args(SweepOptions, args)


def report(result: dict, out: Path) -> int:
    """Print the table; a failed run makes the exit status non-zero (with one line naming the first)."""
    from fmnist.sweep.runner import table

    print(table(result))
    failed = [r for r in result["runs"] if str(r["status"]).startswith("error")]
    if failed:  # the table says which and why; the exit status must say so too
        raise FmnistError(
            f"{len(failed)} of {len(result['runs'])} runs failed ({failed[0]['status'].removeprefix('error: ')}); "
            f"every run's status is in {out / 'sweep.md'}"
        )
    return 0
