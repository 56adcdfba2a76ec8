#!/usr/bin/env bash
# CPU part of the CNN benchmark (issues: speed and accuracy at the frontier, steps 1 and 2), on a quiet
# machine: every CPU recipe sized for this CPU over 3 seeds (on CPUs with native bf16: cpu-20s, cpu-60s,
# cpu-fast, cpu-best and the first step's cpu-60s-v1 / cpu-fast-v1; their -avx2 twins on AVX2-only CPUs),
# flip-TTA and seed-ensemble rows, the floors table (fmnist.bench.cnn.FLOORS), and the plain-PyTorch
# tutorial-style references in the same process: the tutorial net and a small residual net (width 16,
# one block per stage), 8 epochs each, enough to pass 91%.
# About 50 minutes on two Zen 5 cores (machine D); 35 on two AVX2 cores.
# Writes benchmarks/results/cnn-cpu-{bf16-d,avx2}/cnn.json and cnn.md; the table goes into RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
if $bin/python -c "import sys; from fmnist.train.loop import cpu_has_bf16; sys.exit(not cpu_has_bf16())"; then
  recipes=cpu-20s,cpu-60s,cpu-fast,cpu-best,cpu-60s-v1,cpu-fast-v1 out=benchmarks/results/cnn-cpu-bf16-d
else
  recipes=cpu-20s-avx2,cpu-60s-avx2,cpu-fast-avx2 out=benchmarks/results/cnn-cpu-avx2
fi
$bin/fmnist bench cnn --recipes "$recipes" --seeds 0,1,2 --references tutorial,resnet \
  --reference-epochs 8 --reference-resnet 16x1 --ensemble --out "$out" "$@"
