"""``fmnist sweep``: many trainings from a TOML plan on a Dask cluster, one table, an optional ensemble."""

from __future__ import annotations

from pathlib import Path

from fmnist.cli import add_command, add_data_dir_arg
from fmnist.errors import ConfigError, FmnistError
from fmnist.sweep.plan import load_plan

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
    add_data_dir_arg(p, use="every run reads it")
    p.add_argument("--dry-run", action="store_true", help="list the runs and stop")


def cmd_sweep(args) -> int:
    """run seeds / a small grid of trainings on Dask, resumably, into one table

    Expand a TOML plan ([base] config keys, [grid] lists) into runs, train and evaluate each on a Dask
    LocalCluster or an existing scheduler. Finished runs are not redone; killed ones resume. Writes
    sweep.md / sweep.jsonl in --out.

    Example: fmnist sweep sweep.toml --out runs/sweep --workers 2 --ensemble 3
    """
    if args.workers < 1 or args.threads < 1 or args.ensemble < 0:
        raise ConfigError("--workers and --threads must be positive, --ensemble >= 0")
    runs = load_plan(args.plan, data_dir=args.data_dir)
    if args.dry_run:
        for r in runs:
            print(r.name)
        return 0
    from fmnist.sweep.runner import run_sweep, table

    result = run_sweep(
        runs,
        args.out,
        scheduler=args.scheduler,
        workers=args.workers,
        threads=args.threads,
        ensemble=args.ensemble,
        data_dir=args.data_dir,
    )
    print(table(result))
    failed = [r for r in result["runs"] if str(r["status"]).startswith("error")]
    if failed:  # the table says which and why; the exit status must say so too
        raise FmnistError(
            f"{len(failed)} of {len(result['runs'])} runs failed ({failed[0]['status'].removeprefix('error: ')}); "
            f"every run's status is in {args.out / 'sweep.md'}"
        )
    return 0
