"""``fmnist run``: the main job behind ``make run`` — data, train the default recipe, evaluate."""

from __future__ import annotations

import time
from pathlib import Path

from fmnist.cli import add_command, add_data_dir_arg, add_device_arg
from fmnist.data.loader import load_dataset
from fmnist.data.summary import format_summary, summary
from fmnist.evaluate.record import format_evaluation
from fmnist.train.config import make_config
from fmnist.train.device import default_preset, preset_size_note, resolve_device

# Training and evaluation (torch) are imported inside the command: `fmnist --help` stays light.


def register(sub) -> None:
    p = add_command(sub, "run", cmd_run)
    p.add_argument("--dataset", default="fashion")
    add_data_dir_arg(p)
    p.add_argument(
        "--preset",
        default=None,
        help="recipe (default: gpu-fast with CUDA, cpu-fast on CPUs with native bf16, else cpu-fast-avx2)",
    )
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/main-TIMESTAMP)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument(
        "--train-limit", type=int, default=None, help="train on the first N images only (smoke runs)"
    )
    add_device_arg(p)


def cmd_run(args) -> int:
    """the main job: verify the data, train the default CNN, evaluate it

    Verify and summarise the data, train the default recipe for this machine (gpu-fast with CUDA,
    cpu-fast on CPUs with native bf16, cpu-fast-avx2 on AVX2-only CPUs), evaluate on the test set, print
    the run folder and the test accuracy.

    Example: fmnist run --out runs/main
    """
    import torch

    from fmnist.evaluate.report import evaluate_run
    from fmnist.train.trainer import train

    print(format_summary(summary(load_dataset(args.dataset, args.data_dir, quiet=False))))
    device = resolve_device(args.device)
    preset = args.preset or default_preset(device)
    cfg = make_config(
        preset,
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        train_limit=args.train_limit,
        device=str(device),
    )
    run_dir = args.out or Path("runs") / f"main-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"\ntraining preset {preset} into {run_dir}\nconfig:\n{cfg.format()}")
    note = preset_size_note(preset, device, cfg.bf16)
    if note:
        print(note)
    result = train(cfg, run_dir)
    evaluation = evaluate_run(run_dir, args.data_dir, device)
    print("\n" + format_evaluation(evaluation))
    print(
        f"\nrun folder: {run_dir}\ntest accuracy: {evaluation.accuracy:.4f} "
        f"(training {result.train_time_s:.0f} s on {device}, torch {torch.__version__})"
    )
    return 0
