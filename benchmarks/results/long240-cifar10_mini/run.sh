#!/usr/bin/env bash
# VSSL (or BYOL), width 16, cifar10-mini, a complete 240-epoch schedule (long120's settings,
# 2x epochs).
# Usage, from anywhere: bash benchmarks/results/long240-cifar10_mini/run.sh [SEED] [OUT] [METHOD]
# (defaults: seed 0, OUT /tmp/long240, METHOD vssl; a variant such as vssl_nosample works
# too); writes OUT/METHOD-sSEED/, OUT/features-sSEED/, OUT/probe-sSEED.json (+ .uncertainty.csv)
# and, for VSSL and its variants, OUT/auroc-sSEED.json. --resume continues a stopped run.
# One thread: 82-84 min of training per seed with two seeds side by side on the 2-core CPU
# (2026-11-28); about 140 min with other work on the machine (2026-11-27).
# EPOCHS (default 240) sets another schedule length, OMP_NUM_THREADS (default 1) the threads:
# EPOCHS=480 OMP_NUM_THREADS=2 trained a seed in 84-85 min on the idle 2-core CPU (2026-11-28).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MPLBACKEND=Agg
e=${EPOCHS:-240}
s=${1:-0}
o=${2:-/tmp/long240}
m=${3:-vssl}
python -m vssl pretrain --profile long120 --dataset cifar10_mini --method "$m" --seed "$s" \
  --set pretrain.epochs="$e" --set pretrain.checkpoint_every=10 --set pretrain.knn_every=40 \
  --out "$o/$m-s$s" --no-mlflow --no-progress --resume
python -m vssl extract --checkpoint "$o/$m-s$s/checkpoint.pt" --dataset cifar10_mini \
  --profile long120 --out "$o/features-s$s" --no-mlflow
python -m vssl probe --features "$o/features-s$s" --out "$o/probe-s$s.json" --profile long120 \
  --no-mlflow
case $m in vssl*) ;; *) exit 0 ;; esac   # the variance scores need a VSSL checkpoint
python benchmarks/variance_auroc.py "$o/$m-s$s/checkpoint.pt" "$o/probe-s$s.uncertainty.csv" \
  --draws 4 --crop-levels 1.0 0.64 0.4 0.25 0.16 0.08 --out "$o/auroc-s$s.json"
