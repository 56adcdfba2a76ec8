#!/usr/bin/env bash
# CPU part of the CNN benchmark (issue: speed and accuracy at the frontier), on a quiet machine:
# both CPU recipes sized for this CPU over 3 seeds (cpu-60s, cpu-fast on CPUs with native bf16;
# their -avx2 twins on AVX2-only CPUs), flip-TTA and seed-ensemble rows, and the plain-PyTorch
# tutorial-style references in the same process: the tutorial net and a small residual net (width 16,
# one block per stage), 8 epochs each, enough to pass 91%.
# About 25 minutes on two AMX cores, 35 on two AVX2 cores.
# Writes benchmarks/results/cnn-cpu-{bf16,avx2}/cnn.json and cnn.md; the table goes into RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
if $bin/python -c "import sys; from fmnist.train.loop import cpu_has_bf16; sys.exit(not cpu_has_bf16())"; then
  recipes=cpu-60s,cpu-fast out=benchmarks/results/cnn-cpu-bf16
else
  recipes=cpu-60s-avx2,cpu-fast-avx2 out=benchmarks/results/cnn-cpu-avx2
fi
$bin/fmnist bench cnn --recipes "$recipes" --seeds 0,1,2 --references tutorial,resnet \
  --reference-epochs 8 --reference-resnet 16x1 --ensemble --out "$out" "$@"
