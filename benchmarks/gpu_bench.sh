#!/usr/bin/env bash
# The whole GPU part of the CNN benchmark as one command, sized for one H200 within 10 minutes.
#
#   benchmarks/gpu_bench.sh OUT_DIR            # the real run (needs CUDA)
#   benchmarks/gpu_bench.sh OUT_DIR --dry-run  # tiny CPU run of the same code path (CI-sized)
#
# Needs only torch, numpy, Pillow, matplotlib, tqdm (the device image has them) and the four
# Fashion-MNIST .gz files: set FMNIST_DATA_DIR to their folder (the device has no internet).
set -euo pipefail
out=${1:?usage: gpu_bench.sh OUT_DIR [--dry-run]}
mode=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
mkdir -p "$out"
if [ "$mode" = "--dry-run" ]; then
  "$py" -m fmnist bench cnn --recipes gpu-fast,gpu-best --seeds 0,1 --references tutorial,resnet \
    --reference-epochs 1 --epochs 1 --train-limit 1000 --test-limit 500 --width 8 --ensemble --device cpu --out "$out"
  exit 0
fi
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" || true
start=$(date +%s)
# Fast recipes: time to 94% / 95%, three seeds, plus the plain-PyTorch references for the ratio
# (8 epochs each, as on the CPU: their DataLoader is bound by one CPU core, not by the GPU).
"$py" -m fmnist bench cnn --recipes gpu-fast --seeds 0,1,2 --references tutorial,resnet \
  --reference-epochs 8 --ensemble --out "$out/fast" 2>&1 | tee "$out/fast.log"
echo "fast part done after $(( $(date +%s) - start )) s" | tee -a "$out/timing.txt"
# Best single model, three seeds, and the flip-TTA + ensemble over them.
"$py" -m fmnist bench cnn --recipes gpu-best --seeds 0,1,2 --references "" --ensemble \
  --out "$out/best" 2>&1 | tee "$out/best.log"
echo "whole GPU script done after $(( $(date +%s) - start )) s (budget: 600 s)" | tee -a "$out/timing.txt"
