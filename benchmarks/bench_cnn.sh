#!/usr/bin/env bash
# CPU part of the CNN benchmark (issue: speed and accuracy at the frontier), on a quiet machine.
# Writes benchmarks/results/cnn-cpu/cnn.json and cnn.md; copy the table into RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
$bin/fmnist bench cnn --recipes cpu-fast,cpu-60s --seeds 0,1,2 --references tutorial \
  --reference-epochs 10 --out benchmarks/results/cnn-cpu "$@"
