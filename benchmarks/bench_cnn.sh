#!/usr/bin/env bash
# CPU part of the CNN benchmark (issue: speed and accuracy at the frontier), on a quiet machine:
# both CPU recipes over 3 seeds, flip-TTA and seed-ensemble rows, and the plain-PyTorch tutorial-style
# references in the same process: the tutorial net and a small residual net (width 16, one block per
# stage), 8 epochs each, enough to pass 91%. About 35 minutes on two AVX2 cores.
# Writes benchmarks/results/cnn-cpu-avx2/cnn.json and cnn.md; the table goes into RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
$bin/fmnist bench cnn --recipes cpu-60s,cpu-fast --seeds 0,1,2 --references tutorial,resnet \
  --reference-epochs 8 --reference-resnet 16x1 --ensemble --out benchmarks/results/cnn-cpu-avx2 "$@"
