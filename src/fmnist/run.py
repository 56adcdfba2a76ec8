"""``fmnist run``: the main job that ``make run`` calls."""

from __future__ import annotations

from fmnist.cli import add_command


def register(sub) -> None:
    p = add_command(
        sub,
        "run",
        help="the main job: verify the data and summarise it",
        description="The main job behind `make run`.",
        example="fmnist run",
    )
    p.add_argument("--dataset", default="fashion")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from fmnist.data.cli import format_summary, summary
    from fmnist.data.loader import load_dataset

    print(format_summary(summary(load_dataset(args.dataset, args.data_dir, quiet=False))))
    return 0
