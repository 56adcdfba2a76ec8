#!/usr/bin/env bash
# The data audit and the maps of the real Fashion-MNIST behind RESULTS.md, "## Data audit".
#
# Full outputs go to runs/audit/ (git-ignored: label_errors.csv lists all 70,000 images); the summary
# and small pictures are copied to benchmarks/results/. Runs at the lowest priority with one thread
# per job: on a shared 2-core machine two threads fight the other jobs and train ~5x slower.
#
#   benchmarks/bench_audit.sh            # audit (about 15 min on 2 busy cores) + PCA, t-SNE, UMAP maps
set -euo pipefail
cd "$(dirname "$0")/.."
FMNIST=${FMNIST:-.venv/bin/fmnist}
OUT=${OUT:-runs/audit}
RES=benchmarks/results
mkdir -p "$OUT" "$RES"
run() {  # run NAME CMD...: log to $OUT/NAME.log and record the wall time
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*"
    nice -n 19 "$@" 2>&1 | tee "$OUT/$name.log"
    echo "$name $((SECONDS - start)) s" | tee -a "$OUT/times.txt"
}

run audit "$FMNIST" audit --threads 1 --folds 5 --out "$OUT/full"
export NUMBA_NUM_THREADS=1  # UMAP's numba threads; --threads caps BLAS and OpenMP
run map-pca "$FMNIST" viz embed --method pca --threads 1 --out "$OUT/maps"
run map-tsne "$FMNIST" viz embed --method tsne --threads 1 --out "$OUT/maps"
run map-umap "$FMNIST" viz embed --method umap --thumbnails --threads 1 --out "$OUT/maps"

cp "$OUT/full/audit.json" "$RES/audit.json"
cp "$OUT/full/duplicates.png" "$RES/audit_duplicates.png"
cp "$OUT/full/label_errors.png" "$RES/audit_label_errors.png"
for m in pca tsne umap; do cp "$OUT/maps/fashion-train-pixels-$m.png" "$RES/map_pixels_$m.png"; done
head -n 101 "$OUT/full/label_errors.csv" > "$RES/audit_label_errors_top100.csv"
cp "$OUT/full/duplicates.csv" "$RES/audit_duplicates.csv"
ls -l "$RES"/audit* "$RES"/map_pixels_*
cat "$OUT/times.txt"
