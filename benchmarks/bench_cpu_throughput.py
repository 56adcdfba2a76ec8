"""Training and inference throughput of the CPU nets: width, threads, layout, layer order, precision.

    .venv/bin/python benchmarks/bench_cpu_throughput.py [--compile] [--json OUT.json]

Why: on two CPU cores the time-to-accuracy recipes are bound by images/s, so every choice in the
CPU presets (fastcnn width 16, channels_last, pooling before BatchNorm, bf16 only where the CPU
has it, no torch.compile) rests on a row of this table. One training step = forward, backward
and a Nesterov SGD step on a batch of random images (speed does not depend on the values);
inference = eval-mode forward at batch 256. Warm-up steps are excluded.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.bench.cnn import machine
from fmnist.fsio import write_json
from fmnist.models import build_model
from fmnist.models.nets import FastCNN, conv_bn
from fmnist.train.loop import autocast_for, cpu_has_bf16


def bn_before_pool(width: int) -> nn.Module:
    """fastcnn as first written (conv-BN-ReLU then pool): the layer order the current one replaced."""
    model = FastCNN(width=width)
    w1, w2, w3 = width, 2 * width, 4 * width
    model.body = nn.Sequential(
        *conv_bn(1, w1),
        nn.MaxPool2d(2),
        *conv_bn(w1, w2),
        *conv_bn(w2, w2),
        nn.MaxPool2d(2),
        *conv_bn(w2, w3),
    )
    return model


def measure(
    model: nn.Module,
    threads: int,
    bf16: bool = False,
    channels_last: bool = True,
    batch: int = 256,
    steps: int = 20,
    compile_model: bool = False,
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    run = torch.compile(model) if compile_model else model
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def step() -> None:
        with autocast_for(device, bf16):
            loss = F.cross_entropy(run(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first_step_s = time.perf_counter() - t0  # includes compilation when compiling
    for _ in range(4):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train = steps * batch / (time.perf_counter() - t0)
    model.eval()
    xb = torch.randn(256, 1, 28, 28).contiguous(memory_format=fmt)
    with torch.inference_mode(), autocast_for(device, bf16):
        for _ in range(3):
            run(xb)
        t0 = time.perf_counter()
        for _ in range(steps):
            run(xb)
    infer = steps * 256 / (time.perf_counter() - t0)
    return {"train_img_s": train, "infer_img_s": infer, "first_step_s": first_step_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows (slow to compile)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    bf16_native = cpu_has_bf16()
    info = machine()
    print(f"machine: {info}; native bf16: {bf16_native}")
    rows: list[dict] = []

    def row(what: str, model: nn.Module, **kw) -> None:
        r = {"what": what, "params": sum(p.numel() for p in model.parameters()), **kw}
        r.update(measure(model, **kw))
        rows.append(r)
        print(
            f"| {what} | {r['params']:,} | {kw.get('threads')} | {'bf16' if kw.get('bf16') else 'fp32'} | "
            f"{r['train_img_s']:,.0f} | {r['infer_img_s']:,.0f} |",
            flush=True,
        )

    print("| net | params | threads | precision | train img/s | inference img/s (b256) |")
    print("|---|---:|---:|---|---:|---:|")
    for width in (16, 24, 32):
        for threads in (1, 2):
            row(f"fastcnn width {width}", build_model("fastcnn", width=width), threads=threads)
    for width in (16, 32):
        row(f"fastcnn width {width}, BN before pool (old order)", bn_before_pool(width), threads=2)
    row(
        "fastcnn width 16, contiguous (NCHW)",
        build_model("fastcnn", width=16),
        threads=2,
        channels_last=False,
    )
    row("tutorial", build_model("tutorial"), threads=2)
    if bf16_native:
        for width in (16, 32):
            row(f"fastcnn width {width}", build_model("fastcnn", width=width), threads=2, bf16=True)
    if args.compile:
        row(
            "fastcnn width 16, torch.compile", build_model("fastcnn", width=16), threads=2, compile_model=True
        )
        print(f"  (first step, compilation included: {rows[-1]['first_step_s']:.1f} s)")
    if args.json:
        write_json(args.json, {"machine": info, "native_bf16": bf16_native, "rows": rows})


if __name__ == "__main__":
    main()
