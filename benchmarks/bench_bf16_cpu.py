"""fastcnn training and inference throughput on the CPU, fp32 vs bf16 autocast, 1 and 2 threads.

    .venv/bin/python benchmarks/bench_bf16_cpu.py

Why: on CPUs with native bf16 (AVX512-BF16, AMX) oneDNN runs bf16 convolutions much faster, which
is why `fmnist train` autocasts to bf16 there (`--no-bf16` turns it off).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from fmnist.models import build_model
from fmnist.train.loop import autocast_for, cpu_has_bf16


def measure(threads: int, bf16: bool, batch: int = 256) -> tuple[float, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    model = build_model("fastcnn", width=32).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    for i in range(40):
        if i == 10:
            t0 = time.perf_counter()
        with autocast_for(device, bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = 30 * batch / (time.perf_counter() - t0)
    model.eval()
    with torch.inference_mode(), autocast_for(device, bf16):
        for _ in range(5):
            model(x)
        t0 = time.perf_counter()
        for _ in range(40):
            model(x)
    infer = 40 * batch / (time.perf_counter() - t0)
    return train, infer


def main() -> None:
    print(f"CPU has native bf16: {cpu_has_bf16()}; torch {torch.__version__}")
    print("| threads | precision | train img/s | inference img/s (batch 256) |\n|---:|---|---:|---:|")
    for threads in (1, 2):
        for bf16 in (False, True):
            train, infer = measure(threads, bf16)
            print(
                f"| {threads} | {'bf16 autocast' if bf16 else 'fp32'} | {train:,.0f} | {infer:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
